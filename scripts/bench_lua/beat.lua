-- PUT /nacos/v1/ns/instance/beat, light beats (serviceName, ip, port) over a population that
-- register.lua registered with the same prefix/services and base 0: instance k of
-- 0..population-1 lives in service k mod services. A body without code 10200 counts as bad.
-- args: path=<context>/v1/ns/instance/beat prefix= services=N population=N threads=N

function init(args)
  parse_args(args)
  path = arg_str("path", "/nacos/v1/ns/instance/beat")
  prefix = arg_str("prefix", "bench-pop-")
  services = arg_num("services", 100)
  population = arg_num("population", 10000)
  stride = arg_num("threads", 1)
  k = tid
end

function request()
  local idx = k % population
  k = k + stride
  sent = sent + 1
  local ip, port = instance_addr(idx)
  return wrk.format("PUT", path .. "?serviceName=" .. service_name(prefix, idx % services) ..
    "&ip=" .. ip .. "&port=" .. port)
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"code":10200', 1, true) then bad = bad + 1 end
end
