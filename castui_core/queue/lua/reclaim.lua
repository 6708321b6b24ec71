-- reclaim one expired lease (outcome from the shared policy): ARGV P, id, token, now, state,
-- run_after, finished_at ('' = none), reason -> {0} not expired any more / changed, {1, job}
local id, token, now = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if not holds_lease(id, token) then return {0} end
local k = jkey(id)
if tonumber(redis.call('HGET', k, 'lease_expires')) >= now_s() then return {0} end
unindex(id)
redis.call('HINCRBY', k, 'lease_token', 1)
redis.call('HSET', k, 'state', ARGV[5], 'run_after', ARGV[6], 'reason', ARGV[8],
  'updated_at', num(now))
if ARGV[7] == '' then redis.call('HDEL', k, 'finished_at')
else redis.call('HSET', k, 'finished_at', ARGV[7]) end
redis.call('HDEL', k, 'lease_expires')
index(id, now)
audit(now, 'job_state', id, redis.call('HGET', k, 'path'), 'reaper', 'running', ARGV[5],
  ARGV[8], nil)
local job = hgetall(id)
apply_rerun(id, now)
return {1, job}
