-- release: ARGV P, id, token, reason -> {0} lease lost, {1, job}
local id, token = tonumber(ARGV[2]), ARGV[3]
if not holds_lease(id, token) then return {0} end
local now = now_s()
local k = jkey(id)
unindex(id)
local attempts = tonumber(redis.call('HGET', k, 'attempts'))
redis.call('HSET', k, 'state', 'queued', 'attempts', int(math.max(attempts - 1, 0)),
  'run_after', num(now), 'updated_at', num(now))
redis.call('HDEL', k, 'lease_expires', unpack(PROGRESS))
index(id, now)
local f = redis.call('HMGET', k, 'path', 'lease_owner')
audit(now, 'job_state', id, f[1], f[2], 'running', 'queued', ARGV[4], nil)
local job = hgetall(id)
apply_rerun(id, now)
return {1, job}
