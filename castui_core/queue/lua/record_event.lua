-- record_event: ARGV P, kind, job_id, path, actor, reason, details ('' = none) -> event id
return audit(now_s(), ARGV[2], tonumber(ARGV[3]), opt(ARGV[4]), opt(ARGV[5]), nil, nil,
  opt(ARGV[6]), opt(ARGV[7]))
