-- wrk script for scripts/bench/check.sh: rotates a mix of version checks and counts what it
-- sent, so the benchmark can compare it with what the store recorded.
--
-- Environment:
--   CHECK_MIX    file with one "gitlab_info<TAB>referer" line per entry (referer may be empty)
--   CHECK_PATH   path to request, e.g. /check.svg (the query string is appended)
--   CHECK_UNTIL  optional Unix time: from then on, send DRAIN_PATH instead of checks, so that
--                no check is in flight when wrk stops (wrk exits with requests on the wire,
--                and a server cannot answer, or count, a request whose connection is reset)
--   DRAIN_PATH   what to send after CHECK_UNTIL (default /-/health, which is not recorded)
--   CHECK_COUNT_RESPONSES=1  count image responses (slower; for the counted run only)
--   CHECK_CLOSE=1  send `Connection: close`, so that every request opens a new connection
--                (both servers then close after the answer, and wrk reconnects)
--
-- Every request string is built once in init(), so the per-request cost on the client side
-- is the same for every target (nginx gets the very same requests).

local path = os.getenv("CHECK_PATH") or "/check.svg"
local mix = os.getenv("CHECK_MIX")
local check_until = tonumber(os.getenv("CHECK_UNTIL") or "")
local drain_path = os.getenv("DRAIN_PATH") or "/-/health"
local close = os.getenv("CHECK_CLOSE") == "1"
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
    if close then
      headers["Connection"] = "close"
    end
    requests_ready[#requests_ready + 1] = wrk.format("GET", path .. "?gitlab_info=" .. info, headers)
  end
  drain_request = wrk.format("GET", drain_path, close and { Connection = "close" } or nil)
  -- Threads start at different points of the mix.
  position = (id or 0) * 7919 % #requests_ready
  sent = 0
  answered = 0
end

if check_until then
  function request()
    if os.time() >= check_until then
      return drain_request
    end
    position = position % #requests_ready + 1
    sent = sent + 1
    return requests_ready[position]
  end
else
  function request()
    position = position % #requests_ready + 1
    sent = sent + 1
    return requests_ready[position]
  end
end

if os.getenv("CHECK_COUNT_RESPONSES") == "1" then
  function response(status, headers, body)
    local content_type = headers["Content-Type"] or headers["content-type"] or ""
    if status == 200 and content_type:sub(1, 6) == "image/" then
      answered = answered + 1
    end
  end
end

function done(summary, latency, requests)
  -- wrk calls request() once in the first thread before starting, only to check that it
  -- returns a valid request, and never sends that one.
  local total_sent, total_answered = -1, 0
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
    total_answered = total_answered + thread:get("answered")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_us=%d p99_us=%d completed=%d sent=%d answered=%d errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.requests, total_sent, total_answered,
    e.connect, e.read, e.write, e.status, e.timeout))
end
