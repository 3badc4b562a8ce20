-- wrk script for bench/bench_hotpath.py: one single-recipient email-client check per request, cycling over
-- HOTPATH_ADDRESSES recipients (person<i>@example.com), with the bearer key HOTPATH_KEY.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("HOTPATH_KEY") or "bench-key")

local addresses = tonumber(os.getenv("HOTPATH_ADDRESSES") or "1000")
local next_index = 0

function setup(thread)
  thread:set("offset", math.random(0, addresses - 1))
end

request = function()
  local i = ((offset or 0) + next_index) % addresses
  next_index = next_index + 1
  return wrk.format(nil, nil, nil, '{"client":"outlook","to":["person' .. i .. '@example.com"]}')
end

-- With HOTPATH_DELAY_MS each connection waits that long between requests: a fixed offered load
-- (connections x 1000 / delay requests a second) rather than as fast as the server answers, so both
-- servers' latency is compared at the same load, below saturation.
local delay_ms = tonumber(os.getenv("HOTPATH_DELAY_MS") or "0")
if delay_ms > 0 then
  delay = function()
    return delay_ms
  end
end
