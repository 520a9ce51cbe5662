-- etcd "register": POST /v3/kv/put of a distinct key per request, attached to one of the
-- leases listed in the file `leases` (one id a line), through the HTTP/JSON gateway.
-- Key k is <prefix><service k mod services>/<ip>:<port>, the value a small instance JSON.
-- args: prefix=/bench/reg/ services=N base=N leases=<file> threads=N

function init(args)
  parse_args(args)
  prefix = arg_str("prefix", "/bench/reg/")
  services = arg_num("services", 100)
  base = arg_num("base", 0)
  stride = arg_num("threads", 1)
  leases = {}
  for line in io.lines(arg_str("leases")) do
    if #line > 0 then table.insert(leases, line) end
  end
  k = tid
end

function request()
  local idx = base + k
  k = k + stride
  sent = sent + 1
  local ip, port = instance_addr(idx)
  local key = prefix .. service_name("svc-", idx % services) .. "/" .. ip .. ":" .. port
  local value = '{"ip":"' .. ip .. '","port":' .. port .. ',"weight":1.0,"healthy":true,"enabled":true,"metadata":{}}'
  local body = '{"key":"' .. base64(key) .. '","value":"' .. base64(value) .. '","lease":"' ..
    leases[idx % #leases + 1] .. '"}'
  return wrk.format("POST", "/v3/kv/put", { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"revision"', 1, true) then bad = bad + 1 end
end
