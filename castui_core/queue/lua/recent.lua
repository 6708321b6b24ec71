-- recent (read only): ARGV P, library, limit, scan -> {job, job, ...} up to `limit` of the
-- library's newest jobs, any state, highest id first, looking at the newest `scan` job ids
-- only (ids come from one counter; there is no per-library index to walk, and a node's start
-- check must not hold the server for long: ~1 us per id looked at).
local library, limit, scan = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local top = tonumber(redis.call('GET', P .. ':job_ids') or '0')
local out = {}
local id = top
while id > 0 and id > top - scan and #out < limit do
  if redis.call('HGET', jkey(id), 'library') == library then out[#out + 1] = hgetall(id) end
  id = id - 1
end
return out
