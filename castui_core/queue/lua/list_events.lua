-- list_events (read only): ARGV P, kind, job_id, path, since, until, limit (filters '' = none)
-- -> {{event id, {field, value, ...}}, ...} newest first
local kind, path = opt(ARGV[2]), opt(ARGV[4])
local since, until_, limit = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local out = {}
local function matches(fields)
  local e = {}
  for i = 1, #fields, 2 do e[fields[i]] = fields[i + 1] end
  if kind and e.kind ~= kind then return false end
  if ARGV[3] ~= '' and e.job_id ~= ARGV[3] then return false end
  if path and e.path ~= path then return false end
  local at = tonumber(e.at)
  if since and at < since then return false end
  if until_ and at >= until_ then return false end
  return true
end
if ARGV[3] ~= '' then
  -- A job's events have their own index (the job detail asks for them often).
  local ids = redis.call('LRANGE', P .. ':jobev:' .. ARGV[3], 0, -1)
  for i = #ids, 1, -1 do
    local entry = redis.call('XRANGE', K_EVENTS, ids[i] .. '-0', ids[i] .. '-0')
    if #entry > 0 and matches(entry[1][2]) then
      out[#out + 1] = entry[1]
      if #out >= limit then break end
    end
  end
  return out
end
local top = '+'
while #out < limit do
  local entries = redis.call('XREVRANGE', K_EVENTS, top, '-', 'COUNT', 500)
  if #entries == 0 then break end
  for _, entry in ipairs(entries) do
    if matches(entry[2]) then
      out[#out + 1] = entry
      if #out >= limit then break end
    end
  end
  local last = entries[#entries][1]
  local eid = tonumber(string.match(last, '^(%d+)-'))
  if eid <= 1 then break end
  top = int(eid - 1) .. '-0'
end
return out
