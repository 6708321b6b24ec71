-- castui queue (Redis): the job-index helpers (index, totals, re-run, outbox), added after
-- base.lua for the scripts that move jobs; left out of the others because every script runs
-- its whole prelude on each call (~15 us of server time for this part).

-- A flat HGETALL reply as a table, and back. The hot scripts (claim, complete) read the job
-- once and answer with it as they changed it, instead of reading fields again and again:
-- on the development machine each redis.call costs ~5 us of server time on top of the
-- command itself, more than most of the commands cost.
local function as_map(flat)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end
local function as_flat(h)
  local out = {}
  for name, value in pairs(h) do out[#out + 1] = name; out[#out + 1] = value end
  return out
end

-- Running totals of the finished jobs (all, and per library), so totals() without a time
-- filter reads a few counters instead of scanning history: +1 when a job enters a finished
-- state, -1 when it leaves (retry) or is removed (clear_history). tally_fields takes the
-- job's fields from a caller that has them already.
local function tally_fields(state, library, source_size, output_size, reason, sign)
  for _, key in ipairs({P .. ':totals', P .. ':totals:lib:' .. library}) do
    redis.call('HINCRBY', key, state, sign)
    if state == 'done' and source_size and output_size then
      redis.call('HINCRBY', key, 'bytes_before', int(sign * tonumber(source_size)))
      redis.call('HINCRBY', key, 'bytes_after', int(sign * tonumber(output_size)))
    end
  end
  if state == 'failed' or state == 'dead' then
    reason = reason or 'no reason recorded'
    for _, key in ipairs({P .. ':reasons', P .. ':reasons:lib:' .. library}) do
      if redis.call('HINCRBY', key, reason, sign) <= 0 then redis.call('HDEL', key, reason) end
    end
  end
end

local function tally(id, sign)
  local f = redis.call('HMGET', jkey(id), 'state', 'library', 'source_size', 'output_size',
    'reason')
  tally_fields(f[1], f[2], f[3], f[4], f[5], sign)
end

-- Remove a job from the index its current state puts it in (call before changing it).
local function unindex(id)
  local f = redis.call('HMGET', jkey(id), 'state', 'run_after')
  local state = f[1]
  if state == 'queued' then
    redis.call('ZREM', K_DELAYED, int(id))
    redis.call('ZREM', K_READY, ready_member(id, tonumber(f[2])))
  elseif state == 'running' then
    redis.call('ZREM', K_RUNNING, int(id))
  elseif state then
    redis.call('ZREM', K_FINISHED, finished_member(id))
    tally(id, -1)
  end
end

-- Put a job in the index its (new) state calls for, and keep the one-active-job-per-path key.
local function index(id, now)
  local f = redis.call('HMGET', jkey(id), 'state', 'run_after', 'priority', 'lease_expires',
    'finished_at', 'path')
  local state = f[1]
  if state == 'queued' then
    local run_after = tonumber(f[2])
    if run_after <= now then
      redis.call('ZADD', K_READY, -tonumber(f[3]), ready_member(id, run_after))
    else
      redis.call('ZADD', K_DELAYED, f[2], int(id))
    end
    redis.call('HSET', K_ACTIVE, f[6], int(id))
  elseif state == 'running' then
    redis.call('ZADD', K_RUNNING, f[4], int(id))
    redis.call('HSET', K_ACTIVE, f[6], int(id))
  else
    redis.call('ZADD', K_FINISHED, f[5], finished_member(id))
    tally(id, 1)
    if redis.call('HGET', K_ACTIVE, f[6]) == int(id) then
      redis.call('HDEL', K_ACTIVE, f[6])
    end
  end
end

local function new_job(now, path, library, action, reasons, priority, max_attempts, run_after)
  local id = redis.call('INCR', P .. ':job_ids')
  redis.call('HSET', jkey(id), 'id', int(id), 'path', path, 'library', library,
    'action', action, 'state', 'queued', 'reasons', reasons, 'priority', priority,
    'attempts', '0', 'max_attempts', max_attempts, 'run_after', num(run_after),
    'lease_token', '0', 'created_at', num(now), 'updated_at', num(now))
  index(id, now)
  return id
end

local PROGRESS = {'progress_percent', 'progress_fps', 'progress_speed', 'progress_eta_s',
  'progress_at'}
local RESULT = {'output_path', 'source_size', 'output_size', 'duration_s', 'encoder', 'command',
  'exit_code', 'stderr_tail'}
local RERUN = {'rerun_action', 'rerun_reasons', 'rerun_priority', 'rerun_after'}

-- Replace the result fields with the name/value pairs in ARGV[first .. first + 2n - 1].
local function set_result(id, first, n)
  redis.call('HDEL', jkey(id), unpack(RESULT))
  if n > 0 then redis.call('HSET', jkey(id), unpack(ARGV, first, first + 2 * n - 1)) end
end

-- After a running job left 'running': honour a re-run request made while it ran
-- (castui_core.store.jobs._apply_rerun, the same rule).
local function apply_rerun(id, now)
  local k = jkey(id)
  local f = redis.call('HMGET', k, 'rerun_action', 'rerun_reasons', 'rerun_priority',
    'rerun_after', 'state', 'path', 'library', 'priority', 'max_attempts')
  if not f[1] then return end
  local run_after = math.max(now, tonumber(f[4]) or now)
  local reason = 'file changed during the previous run; running again'
  if f[5] == 'queued' then
    unindex(id)
    redis.call('HSET', k, 'action', f[1], 'reasons', f[2] or '[]', 'priority', f[3] or f[8],
      'run_after', num(run_after), 'attempts', '0', 'updated_at', num(now))
    redis.call('HDEL', k, unpack(RERUN))
    index(id, now)
    audit(now, 'rerun_requested', id, f[6], nil, nil, nil, reason, nil)
    return
  end
  redis.call('HDEL', k, unpack(RERUN))
  local new = new_job(now, f[6], f[7], f[1], f[2] or '[]', f[3] or f[8], f[9], run_after)
  audit(now, 'job_state', new, f[6], nil, nil, 'queued', reason,
    cjson.encode({previous_job_id = id}))
end

-- Outbox rows from ARGV[first ..] (5 values each: path, folder, update_type, library, target).
local function outbox_add(now, job_id, first, n)
  for i = 0, n - 1 do
    local a = first + 5 * i
    local oid = redis.call('INCR', P .. ':outbox_ids')
    local key = P .. ':ob:' .. int(oid)
    redis.call('HSET', key, 'id', int(oid), 'path', ARGV[a], 'folder', ARGV[a + 1],
      'update_type', ARGV[a + 2], 'library', ARGV[a + 3], 'target', ARGV[a + 4],
      'state', 'pending', 'attempts', '0', 'next_at', num(now), 'created_at', num(now))
    if job_id then redis.call('HSET', key, 'job_id', int(job_id)) end
    redis.call('ZADD', P .. ':ob:pending:' .. ARGV[a + 4], num(now), int(oid))
    redis.call('ZADD', P .. ':ob:all:' .. ARGV[a + 4], oid, int(oid))
  end
end

-- Move queued jobs whose run_after has come into the claim-ordered set.
local function promote(now)
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', num(now))
  for _, sid in ipairs(due) do
    local f = redis.call('HMGET', P .. ':job:' .. sid, 'priority', 'run_after')
    redis.call('ZADD', K_READY, -tonumber(f[1]), ready_member(tonumber(sid), tonumber(f[2])))
    redis.call('ZREM', K_DELAYED, sid)
  end
end
