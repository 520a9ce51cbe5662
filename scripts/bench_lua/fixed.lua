-- The same request every time: the URL given to wrk (GET), or, with body=..., a POST of that
-- JSON body to the URL's path (etcd's range). Used for the ceiling, list and etcd range loads.
-- args: [body=<json>] [accept_encoding=<header value>] (the Java and Node clients send
-- `gzip,deflate,sdch`)

function init(args)
  parse_args(args)
  local body = arg_str("body", nil)
  if body ~= nil then
    wrk.method = "POST"
    wrk.body = body
    wrk.headers["Content-Type"] = "application/json"
  end
  local encoding = arg_str("accept_encoding", nil)
  if encoding ~= nil then
    wrk.headers["Accept-Encoding"] = encoding
  end
  fixed_request = wrk.format()
end

function request()
  sent = sent + 1
  return fixed_request
end
