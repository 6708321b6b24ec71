-- node_heartbeat: ARGV P, name, status_json -> last_seen (the server's clock stamps it, so
-- "offline" is judged on one clock whatever the nodes' clocks say)
local now = num(now_s())
redis.call('HSET', P .. ':nodes', ARGV[2], ARGV[3])
redis.call('HSET', P .. ':nodes_seen', ARGV[2], now)
return now
