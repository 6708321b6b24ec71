-- totals (read only): ARGV P, since, until, library flag, library
-- -> {done, bytes_before, bytes_after, failed, dead, cancelled, reason, n, reason, n, ...}
local min, max = '-inf', '+inf'
if ARGV[2] ~= '' then min = ARGV[2] end
if ARGV[3] ~= '' then max = '(' .. ARGV[3] end
local want_lib, library = ARGV[4] == '1', ARGV[5]
if ARGV[2] == '' and ARGV[3] == '' then
  -- No time filter: the running totals kept by tally() (common.lua).
  local suffix = ''
  if want_lib then suffix = ':lib:' .. library end
  local t = redis.call('HMGET', P .. ':totals' .. suffix, 'done', 'bytes_before',
    'bytes_after', 'failed', 'dead', 'cancelled')
  local out = {}
  for i = 1, 6 do out[i] = t[i] or '0' end
  local reasons = redis.call('HGETALL', P .. ':reasons' .. suffix)
  for i = 1, #reasons do out[#out + 1] = reasons[i] end
  return out
end
local n = {done = 0, failed = 0, dead = 0, cancelled = 0}
local before, after = 0, 0
local reasons = {}
local ms = redis.call('ZRANGEBYSCORE', K_FINISHED, min, max)
for _, m in ipairs(ms) do
  local f = redis.call('HMGET', jkey(tonumber(m)), 'state', 'library', 'source_size',
    'output_size', 'reason')
  if f[1] and (not want_lib or f[2] == library) then
    n[f[1]] = (n[f[1]] or 0) + 1
    if f[1] == 'done' and f[3] and f[4] then
      before = before + tonumber(f[3]); after = after + tonumber(f[4])
    elseif f[1] == 'failed' or f[1] == 'dead' then
      local r = f[5] or 'no reason recorded'
      reasons[r] = (reasons[r] or 0) + 1
    end
  end
end
local out = {int(n.done), int(before), int(after), int(n.failed), int(n.dead), int(n.cancelled)}
for r, c in pairs(reasons) do out[#out + 1] = r; out[#out + 1] = int(c) end
return out
