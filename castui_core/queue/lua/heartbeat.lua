-- heartbeat: ARGV P, id, token, lease_seconds, percent, fps, speed, eta_s ('' = none)
-- -> {0} lease lost, {1, lease_expires}
-- The fencing read also says which progress fields exist, so a field that is already NULL
-- costs no HDEL (a worker that reports only a percent sends three NULLs every time).
local id, token, lease = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local k = jkey(id)
local names = {'progress_percent', 'progress_fps', 'progress_speed', 'progress_eta_s'}
local f = redis.call('HMGET', k, 'state', 'lease_token', unpack(names))
if f[1] ~= 'running' or f[2] ~= token then return {0} end
local now = now_s()
local expires = num(now + lease)
local set = {'lease_expires', expires, 'updated_at', num(now), 'progress_at', num(now)}
local unset = {}
for i, name in ipairs(names) do
  local v = ARGV[4 + i]
  if v ~= '' then set[#set + 1] = name; set[#set + 1] = v
  elseif f[2 + i] then unset[#unset + 1] = name end
end
redis.call('HSET', k, unpack(set))
if #unset > 0 then redis.call('HDEL', k, unpack(unset)) end
redis.call('ZADD', K_RUNNING, expires, int(id))
return {1, expires}
