-- leave (a running job leaves 'running' as the shared policy decided: fail, release, lease
-- expiry). ARGV P, id, token, now, state, attempts, run_after, finished_at, reason,
-- audit_reason, details, revoke ('1' bumps the token), clear_progress ('1'), actor ('' = the
-- lease owner), only_if_expired ('1'), n_result (-1 = leave the result alone), pairs...
-- Optional values ('' = NULL) carry a leading '=' when present.
-- -> {0} the job is no longer this token's running job (or its lease was renewed), {1, job}
local function val(v) if v == '' then return nil end return string.sub(v, 2) end
local id, token, now = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if not holds_lease(id, token) then return {0} end
local k = jkey(id)
if ARGV[15] == '1' and tonumber(redis.call('HGET', k, 'lease_expires')) >= now_s() then
  return {0}
end
unindex(id)
local n_result = tonumber(ARGV[16])
if n_result >= 0 then set_result(id, 17, n_result) end
if ARGV[12] == '1' then redis.call('HINCRBY', k, 'lease_token', 1) end
redis.call('HSET', k, 'state', ARGV[5], 'attempts', ARGV[6], 'run_after', ARGV[7],
  'updated_at', num(now))
local finished, reason = val(ARGV[8]), val(ARGV[9])
if finished then redis.call('HSET', k, 'finished_at', finished)
else redis.call('HDEL', k, 'finished_at') end
if reason then redis.call('HSET', k, 'reason', reason) else redis.call('HDEL', k, 'reason') end
redis.call('HDEL', k, 'lease_expires')
if ARGV[13] == '1' then redis.call('HDEL', k, unpack(PROGRESS)) end
index(id, now)
local f = redis.call('HMGET', k, 'path', 'lease_owner')
local actor = f[2]
if ARGV[14] ~= '' then actor = ARGV[14] end
audit(now, 'job_state', id, f[1], actor, 'running', ARGV[5], ARGV[10], val(ARGV[11]))
local job = hgetall(id)
apply_rerun(id, now)
return {1, job}
