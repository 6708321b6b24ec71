-- The notification outbox (castui_core.store.outbox, the same rules): ARGV P, op, ...
--   add job_id('' = none) n rows... | due target | next_due target | delivered ids... |
--   retry_later next_at error ids... | stop error ids... | resume target | counts target |
--   rows target limit
-- Row keys: P:ob:<id> (hash), P:ob:pending:<target> (zset by next_at),
-- P:ob:stopped:<target> (set), P:ob:all:<target> (zset by id).
local op = ARGV[2]
local function okey(id) return P .. ':ob:' .. id end
local function rows_of(ids)
  local out = {}
  for _, id in ipairs(ids) do
    local row = redis.call('HGETALL', okey(id))
    if #row > 0 then out[#out + 1] = row end
  end
  return out
end
if op == 'add' then
  outbox_add(now_s(), tonumber(ARGV[3]), 5, tonumber(ARGV[4]))
  return 1
elseif op == 'due' then
  return rows_of(redis.call('ZRANGEBYSCORE', P .. ':ob:pending:' .. ARGV[3], '-inf',
    num(now_s())))
elseif op == 'next_due' then
  local first = redis.call('ZRANGE', P .. ':ob:pending:' .. ARGV[3], 0, 0, 'WITHSCORES')
  if #first == 0 then return false end
  return first[2]
elseif op == 'delivered' then
  for i = 3, #ARGV do
    local target = redis.call('HGET', okey(ARGV[i]), 'target')
    if target then
      redis.call('ZREM', P .. ':ob:pending:' .. target, ARGV[i])
      redis.call('SREM', P .. ':ob:stopped:' .. target, ARGV[i])
      redis.call('ZREM', P .. ':ob:all:' .. target, ARGV[i])
      redis.call('DEL', okey(ARGV[i]))
    end
  end
  return 1
elseif op == 'retry_later' then
  for i = 5, #ARGV do
    local f = redis.call('HMGET', okey(ARGV[i]), 'target', 'state')
    if f[1] then
      redis.call('HINCRBY', okey(ARGV[i]), 'attempts', 1)
      redis.call('HSET', okey(ARGV[i]), 'next_at', ARGV[3], 'last_error', ARGV[4])
      if f[2] == 'pending' then
        redis.call('ZADD', P .. ':ob:pending:' .. f[1], ARGV[3], ARGV[i])
      end
    end
  end
  return 1
elseif op == 'stop' then
  for i = 4, #ARGV do
    local target = redis.call('HGET', okey(ARGV[i]), 'target')
    if target then
      redis.call('HINCRBY', okey(ARGV[i]), 'attempts', 1)
      redis.call('HSET', okey(ARGV[i]), 'state', 'stopped', 'last_error', ARGV[3])
      redis.call('ZREM', P .. ':ob:pending:' .. target, ARGV[i])
      redis.call('SADD', P .. ':ob:stopped:' .. target, ARGV[i])
    end
  end
  return 1
elseif op == 'resume' then
  local now = now_s()
  local stopped = redis.call('SCARD', P .. ':ob:stopped:' .. ARGV[3])
  for _, id in ipairs(redis.call('ZRANGE', P .. ':ob:all:' .. ARGV[3], 0, -1)) do
    local next_at = math.min(tonumber(redis.call('HGET', okey(id), 'next_at')), now)
    redis.call('HSET', okey(id), 'state', 'pending', 'next_at', num(next_at))
    redis.call('ZADD', P .. ':ob:pending:' .. ARGV[3], num(next_at), id)
  end
  redis.call('DEL', P .. ':ob:stopped:' .. ARGV[3])
  return stopped
elseif op == 'counts' then
  return {redis.call('ZCARD', P .. ':ob:pending:' .. ARGV[3]),
    redis.call('SCARD', P .. ':ob:stopped:' .. ARGV[3])}
elseif op == 'rows' then
  local limit = tonumber(ARGV[4])
  return rows_of(redis.call('ZRANGE', P .. ':ob:all:' .. ARGV[3], 0, limit - 1))
end
return redis.error_reply('unknown outbox operation ' .. tostring(op))
