-- wrk script for bench/serve_load.py: POST one text per request, keys in rotation, and a
-- JSON line of results (requests/s counts 200s only; 429 and 503 apart).
local keys, bodies = {}, {}
for key in string.gmatch(os.getenv("TUNELAB_WRK_KEYS") or "", "[^,]+") do
  table.insert(keys, key)
end
-- request bodies, one JSON document a line (JSON escapes newlines inside strings)
for body in string.gmatch(os.getenv("TUNELAB_WRK_BODIES") or "", "[^\n]+") do
  table.insert(bodies, body)
end
if #bodies == 0 then bodies = {'{"texts": ["a test sentence"]}'} end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function init(args)
  counter, ok, n429, n503, other = 0, 0, 0, 0, 0
end

function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json"}
  if #keys > 0 then headers["Authorization"] = "Bearer " .. keys[(counter % #keys) + 1] end
  return wrk.format("POST", nil, headers, bodies[(counter % #bodies) + 1])
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 429 then n429 = n429 + 1
  elseif status == 503 then n503 = n503 + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local t_ok, t429, t503, t_other = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    t_ok = t_ok + thread:get("ok")
    t429 = t429 + thread:get("n429")
    t503 = t503 + thread:get("n503")
    t_other = t_other + thread:get("other")
  end
  local seconds = summary.duration / 1e6
  local errors = t_other + summary.errors.connect + summary.errors.read +
                 summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "seconds": %.1f, "rps": %.1f, "p50_ms": %.2f, "p95_ms": %.2f, ' ..
    '"p99_ms": %.2f, "n429": %d, "n503": %d, "errors": %d}\n',
    t_ok, seconds, t_ok / seconds, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, t429, t503, errors))
end
