-- wrk script for bench/run.py.
--
-- BENCH_WRK_MODE=post_users: every request is a sign-up, a POST of the body BENCH_WRK_BODY to
--   the path BENCH_WRK_PATH (both set by bench/loadgen.py from tests/support/domain.py), each
--   "{unique}" in the body replaced by a token of the request's own (run id from BENCH_RUN_ID, wrk
--   thread number, per-thread counter), so sign-ups never collide (a 409 would count as an error).
-- Any other mode: the request given on the command line (wrk's static request, the fast path).
--
-- done() prints one line, "BENCH_JSON {...}", with the totals and latency percentiles in
-- microseconds; bench/run.py parses it instead of wrk's human-readable summary.

local mode = os.getenv("BENCH_WRK_MODE") or "static"
local run_id = os.getenv("BENCH_RUN_ID") or tostring(os.time())

local next_thread = 0
function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end

if mode == "post_users" then
  local path = assert(os.getenv("BENCH_WRK_PATH"), "post_users: BENCH_WRK_PATH is not set")
  local body = assert(os.getenv("BENCH_WRK_BODY"), "post_users: BENCH_WRK_BODY is not set")
  local counter = 0
  local headers = { ["Content-Type"] = "application/json" }
  -- Defined only in this mode: a request() function makes wrk build every request in Lua.
  function request()
    counter = counter + 1
    local unique = string.format("%s-%d-%d", run_id, tid, counter)
    -- A function as the replacement: a string's "%" would be read as a capture reference.
    local filled = body:gsub("{unique}", function() return unique end)
    return wrk.format("POST", path, headers, filled)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"errors_connect":%d,' ..
    '"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,' ..
    '"lat_p50_us":%.1f,"lat_p90_us":%.1f,"lat_p99_us":%.1f,"lat_max_us":%.1f,' ..
    '"lat_mean_us":%.1f}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean
  ))
end
