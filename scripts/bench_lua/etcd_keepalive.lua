-- etcd "beat": POST /v3/lease/keepalive {"ID": id} (one keep-alive per request) cycling over
-- the leases listed in the file `leases`. An answer without a TTL counts as bad.
-- args: leases=<file> threads=N

function init(args)
  parse_args(args)
  stride = arg_num("threads", 1)
  bodies = {}
  for line in io.lines(arg_str("leases")) do
    if #line > 0 then table.insert(bodies, '{"ID":"' .. line .. '"}') end
  end
  k = tid
end

function request()
  local body = bodies[k % #bodies + 1]
  k = k + stride
  sent = sent + 1
  return wrk.format("POST", "/v3/lease/keepalive", { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"TTL"', 1, true) then bad = bad + 1 end
end
