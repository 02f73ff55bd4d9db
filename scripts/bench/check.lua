-- wrk script for scripts/bench/check.sh: rotates a mix of version checks and counts what it
-- sent, so the benchmark can compare it with what the store recorded.
--
-- Environment:
--   CHECK_MIX    file with one "gitlab_info<TAB>referer" line per entry (referer may be empty)
--   CHECK_PATH   path to request, e.g. /check.svg (the query string is appended)
--
-- Every request string is built once in init(), so the per-request cost on the client side
-- is the same for every target (nginx gets the very same requests).

local path = os.getenv("CHECK_PATH") or "/check.svg"
local mix = os.getenv("CHECK_MIX")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  requests_ready = {}
  for line in io.lines(mix) do
    local info, referer = line:match("^([^\t]+)\t?(.*)$")
    local headers = {}
    if referer ~= nil and referer ~= "" then
      headers["Referer"] = referer
    end
    requests_ready[#requests_ready + 1] = wrk.format("GET", path .. "?gitlab_info=" .. info, headers)
  end
  -- Threads start at different points of the mix.
  position = (id or 0) * 7919 % #requests_ready
  sent = 0
end

function request()
  position = position % #requests_ready + 1
  sent = sent + 1
  return requests_ready[position]
end

function done(summary, latency, requests)
  local total_sent = 0
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_us=%d p99_us=%d completed=%d sent=%d errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.requests, total_sent,
    e.connect, e.read, e.write, e.status, e.timeout))
end
