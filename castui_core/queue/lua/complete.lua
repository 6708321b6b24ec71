-- complete: ARGV P, id, token, n_result, n_outbox, reason_text, result pairs..., outbox rows...
-- -> {0} lease lost, {1, job as it was marked done}
local id, token = tonumber(ARGV[2]), ARGV[3]
local n_result, n_outbox = tonumber(ARGV[4]), tonumber(ARGV[5])
if not holds_lease(id, token) then return {0} end
local now = now_s()
local k = jkey(id)
unindex(id)
set_result(id, 7, n_result)
redis.call('HSET', k, 'state', 'done', 'finished_at', num(now), 'updated_at', num(now))
redis.call('HDEL', k, 'reason', 'lease_expires')
index(id, now)
local f = redis.call('HMGET', k, 'path', 'lease_owner')
audit(now, 'job_state', id, f[1], f[2], 'running', 'done', ARGV[6], nil)
local job = hgetall(id)
apply_rerun(id, now)
-- Same script: the notifications exist exactly when the swap's 'done' does.
outbox_add(now, id, 7 + 2 * n_result, n_outbox)
return {1, job}
