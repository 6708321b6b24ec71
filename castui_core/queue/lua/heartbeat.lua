-- heartbeat: ARGV P, id, token, lease_seconds, percent, fps, speed, eta_s ('' = none)
-- -> {0} lease lost, {1, lease_expires}
local id, token, lease = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if not holds_lease(id, token) then return {0} end
local now = now_s()
local k = jkey(id)
local expires = num(now + lease)
local set = {'lease_expires', expires, 'updated_at', num(now), 'progress_at', num(now)}
local unset = {}
local names = {'progress_percent', 'progress_fps', 'progress_speed', 'progress_eta_s'}
for i, name in ipairs(names) do
  local v = ARGV[4 + i]
  if v == '' then unset[#unset + 1] = name
  else set[#set + 1] = name; set[#set + 1] = v end
end
redis.call('HSET', k, unpack(set))
if #unset > 0 then redis.call('HDEL', k, unpack(unset)) end
redis.call('ZADD', K_RUNNING, expires, int(id))
return {1, expires}
