-- Shared by every wrk script of bench/run: counts HTTP status codes per thread and
-- prints STATUS / SUMMARY / LAT_US lines at the end, which bench/report.py parses.
-- Every target (hello, portico, Django) runs through this hook, so wrk does the
-- same Lua work for each of them and the ratios stay fair.
statuses = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local c = t:get("statuses") or {}
    for k, v in pairs(c) do agg[k] = (agg[k] or 0) + v end
  end
  local keys = {}
  for k in pairs(agg) do table.insert(keys, k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do table.insert(parts, k .. "=" .. agg[k]) end
  io.write("STATUS " .. table.concat(parts, " ") .. "\n")
  io.write(string.format(
    "SUMMARY requests=%d duration_us=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout))
  io.write(string.format("LAT_US p50=%d p90=%d p99=%d max=%d mean=%.0f\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
