-- jobs (read only): ARGV P, id... -> {job, job, ...} the jobs that exist, in the order asked.
-- One reply per few thousand jobs instead of one command each: the dashboard lists every
-- active job, and 100k pipelined HGETALLs cost more to pack and parse than to run.
local out = {}
for i = 2, #ARGV do
  local h = redis.call('HGETALL', P .. ':job:' .. ARGV[i])
  if #h > 0 then out[#out + 1] = h end
end
return out
