-- clear_history: ARGV P, older_than ('' = all), details_json_without_count, actor, states...
-- -> count
-- The audit log keeps the removed jobs' events (as the SQLite backend does).
local chosen = {}
for i = 5, #ARGV do chosen[ARGV[i]] = true end
local max = '+inf'
if ARGV[2] ~= '' then max = '(' .. ARGV[2] end
local members = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', max)
local count = 0
for _, m in ipairs(members) do
  local id = tonumber(m)
  local k = jkey(id)
  if chosen[redis.call('HGET', k, 'state')] then
    unindex(id)
    redis.call('DEL', k)
    count = count + 1
  end
end
-- The details JSON comes from Python (exact floats); only the count is known here.
local details = '{"removed": ' .. int(count) .. ', ' .. string.sub(ARGV[3], 2)
audit(now_s(), 'operator', nil, nil, ARGV[4], nil, nil, nil, details)
return count
