-- claim: ARGV P, owner, lease_seconds -> {0} nothing (paused / none ready),
-- {2} leases expired (the caller reclaims them with the shared policy, then claims again),
-- {1, job} the claimed job.
local owner, lease = ARGV[2], tonumber(ARGV[3])
local now = now_s()
if redis.call('GET', P .. ':paused') == '1' then return {0} end
if #redis.call('ZRANGEBYSCORE', K_RUNNING, '-inf', '(' .. num(now), 'LIMIT', 0, 1) > 0 then
  return {2}
end
promote(now)
local top = redis.call('ZRANGE', K_READY, 0, 0)
if #top == 0 then return {0} end
local id = tonumber(string.match(top[1], ':(%d+)$'))
local k = jkey(id)
redis.call('ZREM', K_READY, top[1])
local token = redis.call('HINCRBY', k, 'lease_token', 1)
local attempts = redis.call('HINCRBY', k, 'attempts', 1)
redis.call('HSET', k, 'state', 'running', 'lease_owner', owner,
  'lease_expires', num(now + lease), 'started_at', num(now), 'updated_at', num(now))
redis.call('HDEL', k, 'finished_at', unpack(PROGRESS))
index(id, now)
local f = redis.call('HMGET', k, 'path', 'max_attempts')
audit(now, 'job_state', id, f[1], owner, 'queued', 'running',
  'attempt ' .. int(attempts) .. ' of ' .. f[2], cjson.encode({token = token}))
return {1, hgetall(id)}
