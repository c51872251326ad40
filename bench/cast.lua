-- Each request casts with a link no other request uses: thread k takes tokens k, k+T, k+2T, …
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
  table.insert(threads, thread)
end

function init(args)
  tokens = {}
  for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
  step = tonumber(os.getenv("BENCH_THREADS"))
  ok, refused, other = 0, 0, 0
  body = '{"choices": {"q": "For"}}'
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  local token = tokens[index]
  index = index + step
  if index > #tokens then index = index - #tokens end
  return wrk.format("POST", "/api/v1/vote/" .. token, headers, body)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 409 then refused = refused + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local ok_total, refused_total, other_total = 0, 0, 0
  for _, thread in ipairs(threads) do
    ok_total = ok_total + thread:get("ok")
    refused_total = refused_total + thread:get("refused")
    other_total = other_total + thread:get("other")
  end
  io.write(string.format(
    'BENCH {"ok": %d, "refused": %d, "other": %d, "errors": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f}\n',
    ok_total, refused_total, other_total,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
