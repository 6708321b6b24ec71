-- expired: ARGV P -> {now, id...} running jobs whose lease ran out (server clock).
local now = now_s()
local ids = redis.call('ZRANGEBYSCORE', K_RUNNING, '-inf', '(' .. num(now))
table.insert(ids, 1, num(now))
return ids
