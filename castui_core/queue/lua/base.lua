-- castui queue (Redis): the helpers every script in this folder starts with (keys, clock,
-- numbers, the fencing check, the audit event). common.lua adds the job indexes.
--
-- Why one prelude: each transition is ONE script (atomic on the server), and every one of them
-- must keep the same indexes and write its audit event the same way. Keys are built from the
-- prefix in ARGV[1]; castui needs one Redis (or one primary), not a cluster.
--
-- Times are the Redis server's clock (TIME), so hosts whose clocks differ agree on leases.
-- Numbers are written with %.17g so a float read back in Python is the one Lua computed.
if redis.replicate_commands then pcall(redis.replicate_commands) end

local P = ARGV[1]
local K_ACTIVE = P .. ':active'       -- hash: path -> id of its queued/running job
local K_DELAYED = P .. ':delayed'     -- zset: queued jobs not ready yet, score run_after
local K_READY = P .. ':ready'         -- zset: ready jobs in claim order (score -priority)
local K_RUNNING = P .. ':running'     -- zset: running jobs, score lease_expires
local K_FINISHED = P .. ':finished'   -- zset: finished jobs, score finished_at
local K_EVENTS = P .. ':events'       -- stream: the audit log, entry id = '<event id>-0'

local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function num(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end
local function jkey(id) return P .. ':job:' .. int(id) end

-- Ties in a zset sort by member, so the member carries the rest of the order:
-- ready: run_after then id (priority is the score); finished: id.
local function ready_member(id, run_after)
  return string.format('%020.6f:%015d', run_after, id)
end
local function finished_member(id) return string.format('%015d', id) end

local function opt(v) if v == false or v == nil or v == '' then return nil end return v end

-- One audit event with the id ``eid`` (same script as the change it describes): for a
-- script that took a block of ids in one INCRBY. Returns the id.
local function audit_as(eid, now, kind, job_id, path, actor, from_state, to_state, reason,
                        details)
  -- Plain appends (no closure or table per field): enqueue writes one event per new job.
  local fields = {'at', num(now), 'kind', kind}
  local n = 4
  local jid = job_id and int(job_id)
  if jid then fields[5] = 'job_id'; fields[6] = jid; n = 6 end
  if opt(path) then fields[n + 1] = 'path'; fields[n + 2] = path; n = n + 2 end
  if opt(actor) then fields[n + 1] = 'actor'; fields[n + 2] = actor; n = n + 2 end
  if opt(from_state) then fields[n + 1] = 'from_state'; fields[n + 2] = from_state; n = n + 2 end
  if opt(to_state) then fields[n + 1] = 'to_state'; fields[n + 2] = to_state; n = n + 2 end
  if opt(reason) then fields[n + 1] = 'reason'; fields[n + 2] = reason; n = n + 2 end
  if opt(details) then fields[n + 1] = 'details'; fields[n + 2] = details; n = n + 2 end
  redis.call('XADD', K_EVENTS, int(eid) .. '-0', unpack(fields))
  if jid then redis.call('RPUSH', P .. ':jobev:' .. jid, int(eid)) end
  return eid
end

-- One audit event with the next id. Returns its id.
local function audit(now, ...)
  return audit_as(redis.call('INCR', P .. ':event_ids'), now, ...)
end

local function hgetall(id) return redis.call('HGETALL', jkey(id)) end

-- A fenced call matches only the job's current token while it is running.
local function holds_lease(id, token)
  local f = redis.call('HMGET', jkey(id), 'state', 'lease_token')
  return f[1] == 'running' and f[2] == token
end
