-- recent (read only): ARGV P, library, limit, from, scan -> {next, job, job, ...}: up to
-- `limit` of the library's jobs, any state, highest id first, looking at `scan` job ids from
-- id `from` down ('0' = from the newest). `next` is the id to go on from ('0': none left).
-- Ids come from one counter and there is no per-library index to walk, so the caller walks
-- in slices: each call holds the server ~4 us per id looked at.
local library, limit, scan = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[5])
local id = tonumber(ARGV[4])
if id == 0 then id = tonumber(redis.call('GET', P .. ':job_ids') or '0') end
local stop = id - scan
local out = {'0'}
while id > 0 and id > stop and #out <= limit do
  if redis.call('HGET', jkey(id), 'library') == library then out[#out + 1] = hgetall(id) end
  id = id - 1
end
if id > 0 then out[1] = int(id) end
return out
