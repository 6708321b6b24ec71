-- pause/resume: ARGV P, '1' (pause) or '0' (resume), actor, reason ('' = none)
local now = now_s()
redis.call('SET', P .. ':paused', ARGV[2])
local action = 'resume'
if ARGV[2] == '1' then action = 'pause' end
audit(now, 'operator', nil, nil, ARGV[3], nil, nil, opt(ARGV[4]), cjson.encode({action = action}))
return 1
