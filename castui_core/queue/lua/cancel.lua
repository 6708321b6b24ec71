-- cancel: ARGV P, id, actor, reason -> {-1} no such job, {-2, job} not active, {1, job}
local id = tonumber(ARGV[2])
local k = jkey(id)
local old = redis.call('HGET', k, 'state')
if not old then return {-1} end
if old ~= 'queued' and old ~= 'running' then return {-2, hgetall(id)} end
local now = now_s()
unindex(id)
-- Bumping the token revokes a running worker's lease: its next call gets LeaseLost.
redis.call('HINCRBY', k, 'lease_token', 1)
redis.call('HSET', k, 'state', 'cancelled', 'reason', ARGV[4], 'finished_at', num(now),
  'updated_at', num(now))
redis.call('HDEL', k, 'lease_expires', unpack(RERUN))
index(id, now)
audit(now, 'job_state', id, redis.call('HGET', k, 'path'), ARGV[3], old, 'cancelled', ARGV[4],
  cjson.encode({action = 'cancel'}))
return {1, hgetall(id)}
