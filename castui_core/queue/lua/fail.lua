-- fail (apply an outcome the shared policy computed): ARGV P, id, token, now, state,
-- run_after, finished_at ('' = none), reason, audit_reason, details ('' = none), n_result,
-- result pairs... -> {0} lease lost (state or token changed since the read), {1, job}
local id, token, now = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if not holds_lease(id, token) then return {0} end
local k = jkey(id)
unindex(id)
set_result(id, 12, tonumber(ARGV[11]))
redis.call('HSET', k, 'state', ARGV[5], 'reason', ARGV[8], 'run_after', ARGV[6],
  'updated_at', num(now))
if ARGV[7] == '' then redis.call('HDEL', k, 'finished_at')
else redis.call('HSET', k, 'finished_at', ARGV[7]) end
redis.call('HDEL', k, 'lease_expires')
index(id, now)
local f = redis.call('HMGET', k, 'path', 'lease_owner')
audit(now, 'job_state', id, f[1], f[2], 'running', ARGV[5], ARGV[9], opt(ARGV[10]))
local job = hgetall(id)
apply_rerun(id, now)
return {1, job}
