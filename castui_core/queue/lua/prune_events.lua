-- prune_events: ARGV P, older_than, keep_last (-1 = no cap), max -> events removed (at most
-- max per call, so one call never holds the server long; the caller repeats).
-- The oldest entries go first; each job's event list loses its head in step (a job's events
-- are appended in order), so list_events(job_id=…) never points at a removed entry.
local older, keep, max = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local remaining = redis.call('XLEN', K_EVENTS)
local entries = redis.call('XRANGE', K_EVENTS, '-', '+', 'COUNT', max)
local n = 0
for _, e in ipairs(entries) do
  local at, job = nil, nil
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == 'at' then at = tonumber(f[i + 1]) elseif f[i] == 'job_id' then job = f[i + 1] end
  end
  if at >= older and (keep < 0 or remaining <= keep) then break end
  redis.call('XDEL', K_EVENTS, e[1])
  if job then redis.call('LPOP', P .. ':jobev:' .. job) end
  remaining = remaining - 1
  n = n + 1
end
return n
