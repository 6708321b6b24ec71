-- set_priority: ARGV P, id, priority, actor -> {-1} no such job, {-2, job} finished, {1, job}
local id, priority = tonumber(ARGV[2]), tonumber(ARGV[3])
local k = jkey(id)
local f = redis.call('HMGET', k, 'state', 'path', 'priority')
if not f[1] then return {-1} end
if f[1] ~= 'queued' and f[1] ~= 'running' then return {-2, hgetall(id)} end
local now = now_s()
unindex(id)
redis.call('HSET', k, 'priority', int(priority), 'updated_at', num(now))
index(id, now)
audit(now, 'operator', id, f[2], ARGV[4], nil, nil, nil,
  cjson.encode({action = 'priority', before = tonumber(f[3]), after = priority}))
return {1, hgetall(id)}
