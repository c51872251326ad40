-- Votes with links from BENCH_TOKENS, each link used once, at BENCH_RATE votes/s for this wrk
-- (0: each connection votes again as soon as it has its answer). When a thread has its last
-- answer it prints DONE, so bench/national.py can stop wrk then; at the end, one BENCH line.
local ffi = require("ffi")
ffi.cdef [[
  struct bench_timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clock_id, struct bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
-- A connection with no link left to use waits this long (ms): until wrk is stopped.
local PARKED = 3600 * 1000

local function now()
  local ts = ffi.new("struct bench_timespec")
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  -- Thread k of T takes links k, k+T, k+2T, … and offers 1/T of the rate.
  local count = tonumber(os.getenv("BENCH_THREADS"))
  local rate = tonumber(os.getenv("BENCH_RATE"))
  tokens = {}
  local line_number = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    line_number = line_number + 1
    if (line_number - id) % count == 0 then tokens[#tokens + 1] = line end
  end
  interval = rate > 0 and count / rate or 0
  claimed, sent, answered, ok, refused, other = 0, 0, 0, 0, 0, 0
  started, first_sent, last_answer = nil, 0, 0
  late = {}
  body = '{"choices": {"q": "For"}}'
  headers = { ["Content-Type"] = "application/json" }
end

-- Called before each request: give it the next slot of this thread's timetable, so votes
-- leave at the offered rate whatever the answers' latency, as long as a connection is free.
function delay()
  if claimed >= #tokens then return PARKED end
  if interval == 0 then
    claimed = claimed + 1
    return 0
  end
  local t = now()
  started = started or t
  local due = started + claimed * interval
  claimed = claimed + 1
  if due >= t then return (due - t) * 1000 end
  -- Every connection was waiting for an answer when this vote was due: it leaves late.
  late[#late + 1] = t - due
  return 0
end

function request()
  -- wrk has the first thread build one request before any is due, to check the script.
  if claimed == 0 then return wrk.format("POST", "/api/v1/vote/check", headers, body) end
  sent = sent + 1
  if sent == 1 then first_sent = now() end
  return wrk.format("POST", "/api/v1/vote/" .. (tokens[sent] or "none"), headers, body)
end

function response(status, headers, body)
  answered = answered + 1
  last_answer = now()
  if status == 200 then ok = ok + 1
  elseif status == 409 then refused = refused + 1
  else other = other + 1 end
  if answered == #tokens then
    io.write("DONE\n")
    io.stdout:flush()
  end
end

function done(summary, latency, requests)
  local totals = { claimed = 0, sent = 0, answered = 0, ok = 0, refused = 0, other = 0 }
  local first, last, slips = nil, 0, {}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do totals[name] = totals[name] + thread:get(name) end
    local f = thread:get("first_sent")
    if f > 0 and (first == nil or f < first) then first = f end
    last = math.max(last, thread:get("last_answer"))
    for _, slip in ipairs(thread:get("late")) do slips[#slips + 1] = slip end
  end
  -- The 99th percentile of lateness over every vote sent, most of which left on time.
  table.sort(slips)
  local on_time = totals.claimed - #slips
  local rank = math.ceil(0.99 * totals.claimed)
  local late_p99 = rank > on_time and slips[rank - on_time] or 0
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"sent": %d, "answered": %d, "ok": %d, "refused": %d, "other": %d, ' ..
    '"errors": %d, "first_sent": %.6f, "last_answer": %.6f, "p50_ms": %.2f, ' ..
    '"p99_ms": %.2f, "late_p99_ms": %.2f, "late_max_ms": %.2f}\n',
    totals.sent, totals.answered, totals.ok, totals.refused, totals.other,
    errors.connect + errors.read + errors.write + errors.timeout,
    first or 0, last, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    late_p99 * 1000, (slips[#slips] or 0) * 1000))
end
