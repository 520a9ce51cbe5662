-- Paces a load at a fixed rate (wrk has no rate option; wrk2 is not in Debian). scripts/benchmarks/wrk.py
-- puts this between common.lua and a load's script when it passes `rate=`. wrk calls delay()
-- before every request but each connection's first: it hands out send slots 1/rate apart (per
-- thread: rate/threads) and answers the milliseconds to wait for the next one, read from
-- CLOCK_MONOTONIC through LuaJIT's ffi. When every connection is busy the node is behind: the
-- slot is already past, the request goes at once (so the load catches up), and the lateness
-- is kept as lag_max_us (the largest) and late, late_100ms, late_1s (requests more than 10 ms,
-- 100 ms, 1 s behind), which done() reports with the achieved rate.
-- args: rate=<requests/s over all threads> threads=N

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000000 + tonumber(timespec.tv_nsec) / 1000
end

lag_max_us = 0
late = 0
late_100ms = 0
late_1s = 0
local next_slot_us = nil
local interval_us = nil

function delay()
  local now = now_us()
  if next_slot_us == nil then
    interval_us = 1000000 * arg_num("threads", 1) / arg_num("rate", 1000)
    next_slot_us = now
  end
  local wait = next_slot_us - now
  next_slot_us = next_slot_us + interval_us
  if wait >= 0 then
    return math.floor(wait / 1000)
  end
  if -wait > lag_max_us then lag_max_us = -wait end
  if -wait > 10000 then late = late + 1 end
  if -wait > 100000 then late_100ms = late_100ms + 1 end
  if -wait > 1000000 then late_1s = late_1s + 1 end
  return 0
end
