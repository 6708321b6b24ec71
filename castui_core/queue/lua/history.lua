-- history (read only): ARGV P, since ('' = none), until ('' = none), library flag ('1' = filter),
-- library, limit, offset, states... -> {job, job, ...} newest finished first (id desc on ties)
local min, max = '-inf', '+inf'
if ARGV[2] ~= '' then min = ARGV[2] end
if ARGV[3] ~= '' then max = '(' .. ARGV[3] end
local want_lib, library = ARGV[4] == '1', ARGV[5]
local limit, offset = tonumber(ARGV[6]), tonumber(ARGV[7])
local chosen = {}
for i = 8, #ARGV do chosen[ARGV[i]] = true end
-- Read the index in growing slices: a plain page needs ~limit entries, a filtered one more.
local out, skipped, start = {}, 0, 0
local chunk = math.min(1000, math.max(32, limit + offset))
while #out < limit do
  local ms = redis.call('ZREVRANGEBYSCORE', K_FINISHED, max, min, 'LIMIT', start, chunk)
  if #ms == 0 then break end
  start = start + #ms
  chunk = math.min(4000, chunk * 2)
  for _, m in ipairs(ms) do
    local f = redis.call('HMGET', jkey(tonumber(m)), 'state', 'library')
    if chosen[f[1]] and (not want_lib or f[2] == library) then
      if skipped < offset then skipped = skipped + 1
      else
        out[#out + 1] = hgetall(tonumber(m))
        if #out >= limit then break end
      end
    end
  end
end
return out
