-- A client-like mix over the beat population: of every 20 requests, 16 list a population
-- service, 3 light-beat a population instance and 1 registers a new instance (number base+k)
-- into a population service, so lists see their services change. Non-200 answers and beats
-- answered 20404 count as bad.
-- args: context=/nacos prefix= services=N population=N base=N threads=N [accept_encoding=...]

function init(args)
  parse_args(args)
  local context = arg_str("context", "/nacos")
  list_path = context .. "/v1/ns/instance/list?serviceName="
  beat_path = context .. "/v1/ns/instance/beat?serviceName="
  reg_path = context .. "/v1/ns/instance?serviceName="
  prefix = arg_str("prefix", "bench-pop-")
  services = arg_num("services", 100)
  population = arg_num("population", 10000)
  base = arg_num("base", population)
  stride = arg_num("threads", 1)
  local encoding = arg_str("accept_encoding", nil)
  if encoding ~= nil then
    wrk.headers["Accept-Encoding"] = encoding
  end
  k = tid
end

function request()
  local n = k
  k = k + stride
  sent = sent + 1
  local slot = n % 20
  if slot < 16 then
    return wrk.format("GET", list_path .. service_name(prefix, math.floor(n / 20) % services))
  elseif slot < 19 then
    local idx = (math.floor(n / 20) * 3 + slot - 16) % population
    local ip, port = instance_addr(idx)
    return wrk.format("PUT", beat_path .. service_name(prefix, idx % services) .. "&ip=" .. ip .. "&port=" .. port)
  else
    local idx = base + math.floor(n / 20)
    local ip, port = instance_addr(idx)
    return wrk.format("POST", reg_path .. service_name(prefix, idx % services) ..
      "&ip=" .. ip .. "&port=" .. port .. "&ephemeral=true")
  end
end

function response(status, headers, body)
  if status ~= 200 or string.find(body, '"code":20404', 1, true) then bad = bad + 1 end
end
