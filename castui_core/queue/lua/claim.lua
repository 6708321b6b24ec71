-- claim: ARGV P, owner, lease_seconds -> {0} nothing (paused / none ready),
-- {2} leases expired (the caller reclaims them with the shared policy, then claims again),
-- {1, job} the claimed job.
--
-- The hottest script: it reads the job once (HGETALL) and writes it once (HSET), pops the
-- ready set in one step (ZPOPMIN) and answers with the job as it changed it, in 11 commands
-- (18 before; each redis.call costs more than the command itself). The path's K_ACTIVE entry
-- already names this job: every script that makes a job queued puts it there (index()).
local owner, lease = ARGV[2], tonumber(ARGV[3])
local now = now_s()
if redis.call('GET', P .. ':paused') == '1' then return {0} end
if #redis.call('ZRANGEBYSCORE', K_RUNNING, '-inf', '(' .. num(now), 'LIMIT', 0, 1) > 0 then
  return {2}
end
promote(now)
local top = redis.call('ZPOPMIN', K_READY)
if #top == 0 then return {0} end
local id = tonumber(string.match(top[1], ':(%d+)$'))
local k = jkey(id)
local h = as_map(redis.call('HGETALL', k))
local token = tonumber(h.lease_token) + 1
local attempts = tonumber(h.attempts) + 1
local set = {'lease_token', int(token), 'attempts', int(attempts), 'state', 'running',
  'lease_owner', owner, 'lease_expires', num(now + lease), 'started_at', num(now),
  'updated_at', num(now)}
redis.call('HSET', k, unpack(set))
for i = 1, #set, 2 do h[set[i]] = set[i + 1] end
local gone = {}
for _, name in ipairs(PROGRESS) do
  if h[name] then gone[#gone + 1] = name; h[name] = nil end
end
if h.finished_at then gone[#gone + 1] = 'finished_at'; h.finished_at = nil end
if #gone > 0 then redis.call('HDEL', k, unpack(gone)) end
redis.call('ZADD', K_RUNNING, h.lease_expires, int(id))
audit(now, 'job_state', id, h.path, owner, 'queued', 'running',
  'attempt ' .. int(attempts) .. ' of ' .. h.max_attempts, '{"token":' .. int(token) .. '}')
return {1, as_flat(h)}
