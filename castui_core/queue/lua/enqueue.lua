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
local now_text = num(now)
local rerun_reason = 'file changed while it was being converted; it will run again'
-- First pass: which paths have an active job (one HMGET for the whole batch), what each item
-- will do, and so how many job and event ids the batch needs; then one INCRBY each takes them
-- as a block instead of an INCR per item (HSET, XADD, RPUSH are left per new job).
local paths = {}
for i = 0, n - 1 do paths[i + 1] = F[1 + 8 * i] end
local found = redis.call('HMGET', K_ACTIVE, unpack(paths))
local plan, jobs_needed, events_needed = {}, 0, 0
for i = 0, n - 1 do
  local a = 1 + 8 * i
  local active = found[i + 1]
  if not active then
    plan[i] = {'new'}
    jobs_needed = jobs_needed + 1
    events_needed = events_needed + 1
  else
    local id = tonumber(active)
    local f = redis.call('HMGET', jkey(id), 'state', 'started_at', 'run_after', 'priority',
      'rerun_priority', 'rerun_after')
    local modified_at = tonumber(F[a + 6])
    if f[1] == 'queued' then plan[i] = {'debounce', id, f}
    elseif modified_at and f[2] and modified_at < tonumber(f[2]) then
      plan[i] = {'running', id}
    else
      plan[i] = {'rerun', id, f}
      events_needed = events_needed + 1
    end
  end
end
local next_id, next_eid = 0, 0
if jobs_needed > 0 then
  next_id = redis.call('INCRBY', P .. ':job_ids', jobs_needed) - jobs_needed + 1
end
if events_needed > 0 then
  next_eid = redis.call('INCRBY', P .. ':event_ids', events_needed) - events_needed + 1
end
local out = {}
local ready, delayed, actives = {}, {}, {}
-- The new jobs first, then the existing ones: the audit trail gets the new jobs' events, then
-- the re-run requests, in item order each, as the SQLite backend writes them.
for i = 0, n - 1 do
  if plan[i][1] == 'new' then
    local a = 1 + 8 * i
    local path, priority = F[a], tonumber(F[a + 4])
    local ready_at = now + math.max(0, tonumber(F[a + 5]))
    -- new_job() inlined, its index writes batched below (the paths are distinct).
    local id = next_id
    next_id = next_id + 1
    redis.call('HSET', jkey(id), 'id', int(id), 'path', path, 'library', F[a + 1],
      'action', F[a + 2], 'state', 'queued', 'reasons', F[a + 3], 'priority', int(priority),
      'attempts', '0', 'max_attempts', max_attempts, 'run_after', num(ready_at),
      'lease_token', '0', 'created_at', now_text, 'updated_at', now_text)
    if ready_at <= now then
      ready[#ready + 1] = -priority; ready[#ready + 1] = ready_member(id, ready_at)
    else
      delayed[#delayed + 1] = num(ready_at); delayed[#delayed + 1] = int(id)
    end
    actives[#actives + 1] = path; actives[#actives + 1] = int(id)
    audit_as(next_eid, now, 'job_state', id, path, nil, nil, 'queued', F[a + 7], nil)
    next_eid = next_eid + 1
    out[2 * i + 1] = id; out[2 * i + 2] = 'created'
  end
end
for i = 0, n - 1 do
  local what, id, f = plan[i][1], plan[i][2], plan[i][3]
  local a = 1 + 8 * i
  local path, library, action, reasons = F[a], F[a + 1], F[a + 2], F[a + 3]
  local priority = tonumber(F[a + 4])
  local ready_at = now + math.max(0, tonumber(F[a + 5]))
  if what == 'debounce' then
    -- Still changing (or rescanned): wait for it to settle; the newest decision wins and
    -- priority only goes up, so an operator's bump is not undone.
    unindex(id)
    redis.call('HSET', jkey(id), 'run_after', num(math.max(tonumber(f[3]), ready_at)),
      'action', action, 'reasons', reasons, 'library', library,
      'priority', int(math.max(tonumber(f[4]), priority)), 'updated_at', now_text)
    index(id, now)
    out[2 * i + 1] = id; out[2 * i + 2] = 'debounced'
  elseif what == 'running' then
    out[2 * i + 1] = id; out[2 * i + 2] = 'already_running'
  elseif what == 'rerun' then
    local rp = tonumber(f[5]) or tonumber(f[4])
    redis.call('HSET', jkey(id), 'rerun_action', action, 'rerun_reasons', reasons,
      'rerun_priority', int(math.max(rp, priority)),
      'rerun_after', num(math.max(tonumber(f[6]) or 0, ready_at)), 'updated_at', now_text)
    audit_as(next_eid, now, 'rerun_requested', id, path, nil, nil, nil, rerun_reason, nil)
    next_eid = next_eid + 1
    out[2 * i + 1] = id; out[2 * i + 2] = 'rerun_scheduled'
  end
end
if #ready > 0 then redis.call('ZADD', K_READY, unpack(ready)) end
if #delayed > 0 then redis.call('ZADD', K_DELAYED, unpack(delayed)) end
if #actives > 0 then redis.call('HSET', K_ACTIVE, unpack(actives)) end
return out
