-- wrk script for mcpmux benchmarks: POST one JSON-RPC request per call with the
-- session headers of an MCP session the harness opened beforehand.
--
--   wrk -t1 -c16 -d5s -s bench/call.lua URL -- SESSION_ID PROTOCOL_VERSION BODY_FILE [AUTHORIZATION [METHOD NAME]]
--
-- SESSION_ID "-" sends no Mcp-Session-Id (a 2026-07-28 request); METHOD and NAME are
-- then mirrored in Mcp-Method and Mcp-Name.
--
-- BODY_FILE holds the request with the literal id 0 ("id":0); each request gets a
-- fresh id (a session must not have two requests in flight with one id). done()
-- prints one line, "BENCHJSON {...}", with counts and latency percentiles in µs.

local prefix, suffix
local counter = 0
local thread_base = 0

function setup(thread)
  thread_base = thread_base + 1
  thread:set("base", thread_base * 100000000)
end

function init(args)
  local f = assert(io.open(args[3], "rb"))
  local body = f:read("*a")
  f:close()
  local i, j = string.find(body, '"id":0', 1, true)
  assert(i, 'BODY_FILE must contain "id":0')
  prefix = string.sub(body, 1, i + 4)
  suffix = string.sub(body, j + 1)
  counter = base or 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  if args[1] ~= "-" then  -- "-": a 2026-07-28 request (no session; Mcp-Method/Mcp-Name instead)
    wrk.headers["Mcp-Session-Id"] = args[1]
  end
  if args[5] and args[5] ~= "" then
    wrk.headers["Mcp-Method"] = args[5]
    wrk.headers["Mcp-Name"] = args[6]
  end
  wrk.headers["MCP-Protocol-Version"] = args[2]
  if args[4] and args[4] ~= "" then
    wrk.headers["Authorization"] = args[4]
  end
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, prefix .. counter .. suffix)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
