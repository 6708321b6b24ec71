-- retry: ARGV P, id, actor -> {-1} no such job, {-2, job} not failed/dead/cancelled,
-- {-3, job, other id} the path has another active job, {1, job}
local id = tonumber(ARGV[2])
local k = jkey(id)
local f = redis.call('HMGET', k, 'state', 'path', 'reason')
local old = f[1]
if not old then return {-1} end
if old ~= 'failed' and old ~= 'dead' and old ~= 'cancelled' then return {-2, hgetall(id)} end
local other = redis.call('HGET', K_ACTIVE, f[2])
if other then return {-3, hgetall(id), other} end
local now = now_s()
unindex(id)
redis.call('HSET', k, 'state', 'queued', 'attempts', '0', 'run_after', num(now),
  'updated_at', num(now))
redis.call('HDEL', k, 'reason', 'lease_expires', 'started_at', 'finished_at', unpack(RESULT))
index(id, now)
audit(now, 'job_state', id, f[2], ARGV[3], old, 'queued',
  'retried by operator (was ' .. old .. ': ' .. (f[3] or 'no reason recorded') .. ')',
  cjson.encode({action = 'retry'}))
return {1, hgetall(id)}
