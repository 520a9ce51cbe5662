-- POST /nacos/v1/ns/instance with a distinct instance per request (query parameters, empty
-- body, as the Java and Python clients send them). Instance numbers base + (k mod limit) are
-- dealt round robin to the threads; instance k goes to service k mod services. ephemeral=false
-- registers persistent instances (through Raft).
-- args: path=<context>/v1/ns/instance prefix=<service name prefix> services=N base=N limit=N threads=N
--       [ephemeral=true|false]

function init(args)
  parse_args(args)
  path = arg_str("path", "/nacos/v1/ns/instance")
  prefix = arg_str("prefix", "bench-reg-")
  services = arg_num("services", 100)
  base = arg_num("base", 0)
  limit = arg_num("limit", 2 ^ 40)
  stride = arg_num("threads", 1)
  ephemeral = arg_str("ephemeral", "true")
  k = tid
end

function request()
  local idx = base + (k % limit)
  k = k + stride
  sent = sent + 1
  local ip, port = instance_addr(idx)
  return wrk.format("POST", path .. "?serviceName=" .. service_name(prefix, idx % services) ..
    "&ip=" .. ip .. "&port=" .. port .. "&ephemeral=" .. ephemeral)
end
