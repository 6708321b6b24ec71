-- enqueue (a batch of distinct paths, merged by the caller like the SQLite backend does):
-- ARGV P, max_attempts, n, items: one string of 8 fields per item, every field ended by a
-- NUL byte (no path can hold one; packing thousands of arguments cost more than the work):
-- path, library, action, reasons_json, priority, debounce_s, modified_at ('' = unknown),
-- reason_text -> {id, outcome, id, outcome, ...}
local max_attempts, n = ARGV[2], tonumber(ARGV[3])
local F, pos, blob = {}, 1, ARGV[4]
while true do
  local z = string.find(blob, '\0', pos, true)
  if not z then break end
  F[#F + 1] = string.sub(blob, pos, z - 1)
  pos = z + 1
end
local now = now_s()
local out = {}
local ready, delayed, actives = {}, {}, {}
local rerun_reason = 'file changed while it was being converted; it will run again'
for i = 0, n - 1 do
  local a = 1 + 8 * i
  local path, library, action, reasons = F[a], F[a + 1], F[a + 2], F[a + 3]
  local priority = tonumber(F[a + 4])
  local ready_at = now + math.max(0, tonumber(F[a + 5]))
  local modified_at = tonumber(F[a + 6])
  local active = redis.call('HGET', K_ACTIVE, path)
  if not active then
    -- new_job() inlined, its index writes batched below (the paths are distinct).
    local id = redis.call('INCR', P .. ':job_ids')
    redis.call('HSET', jkey(id), 'id', int(id), 'path', path, 'library', library,
      'action', action, 'state', 'queued', 'reasons', reasons, 'priority', int(priority),
      'attempts', '0', 'max_attempts', max_attempts, 'run_after', num(ready_at),
      'lease_token', '0', 'created_at', num(now), 'updated_at', num(now))
    if ready_at <= now then
      ready[#ready + 1] = -priority; ready[#ready + 1] = ready_member(id, ready_at)
    else
      delayed[#delayed + 1] = num(ready_at); delayed[#delayed + 1] = int(id)
    end
    actives[#actives + 1] = path; actives[#actives + 1] = int(id)
    audit(now, 'job_state', id, path, nil, nil, 'queued', F[a + 7], nil)
    out[#out + 1] = id; out[#out + 1] = 'created'
  else
    local id = tonumber(active)
    local k = jkey(id)
    local f = redis.call('HMGET', k, 'state', 'started_at', 'run_after', 'priority',
      'rerun_priority', 'rerun_after')
    if f[1] == 'queued' then
      -- Still changing (or rescanned): wait for it to settle; the newest decision wins and
      -- priority only goes up, so an operator's bump is not undone.
      unindex(id)
      redis.call('HSET', k, 'run_after', num(math.max(tonumber(f[3]), ready_at)),
        'action', action, 'reasons', reasons, 'library', library,
        'priority', int(math.max(tonumber(f[4]), priority)), 'updated_at', num(now))
      index(id, now)
      out[#out + 1] = id; out[#out + 1] = 'debounced'
    elseif modified_at and f[2] and modified_at < tonumber(f[2]) then
      out[#out + 1] = id; out[#out + 1] = 'already_running'
    else
      local rp = tonumber(f[5]) or tonumber(f[4])
      redis.call('HSET', k, 'rerun_action', action, 'rerun_reasons', reasons,
        'rerun_priority', int(math.max(rp, priority)),
        'rerun_after', num(math.max(tonumber(f[6]) or 0, ready_at)), 'updated_at', num(now))
      audit(now, 'rerun_requested', id, path, nil, nil, nil, rerun_reason, nil)
      out[#out + 1] = id; out[#out + 1] = 'rerun_scheduled'
    end
  end
end
if #ready > 0 then redis.call('ZADD', K_READY, unpack(ready)) end
if #delayed > 0 then redis.call('ZADD', K_DELAYED, unpack(delayed)) end
if #actives > 0 then redis.call('HSET', K_ACTIVE, unpack(actives)) end
return out
