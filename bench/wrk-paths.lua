-- wrk script for bench/serve.ts: every simulated client downloads its own file.
--
-- Client slot i (0-based) owns line i+1 of the file named by $WRK_PATHS_FILE. wrk thread t of
-- $WRK_THREADS owns the contiguous block of slots [t*k, (t+1)*k), k = slots / threads, which
-- is also its number of connections. Each new request on a thread takes the thread's next
-- path in round-robin order, so every path is requested equally often (within two), a
-- path is not handed out again before the thread's k-1 other paths have been, and threads
-- never share a path. A TCP connection is NOT pinned to one path: wrk's request() hook is not
-- told which connection asks, and one thread per connection (the only way to pin) costs
-- about 30 % throughput and a 25x p99 on two cores.
--
-- Without a response() hook wrk does not buffer bodies, which keeps the load generator cheap.
-- done() prints one line, "WRK_JSON {...}", that bench/serve.ts parses.

local slot_paths = nil -- main state: all paths, read once
local threads = {}     -- main state: the thread objects, for done()

local function read_paths()
  local file = os.getenv("WRK_PATHS_FILE") or error("WRK_PATHS_FILE is not set")
  local paths = {}
  for line in io.lines(file) do
    if line ~= "" then paths[#paths + 1] = line end
  end
  return paths
end

-- Main state, once per thread before it starts: hand the thread its block of paths.
function setup(thread)
  slot_paths = slot_paths or read_paths()
  local nthreads = tonumber(os.getenv("WRK_THREADS")) or error("WRK_THREADS is not set")
  local k = #slot_paths / nthreads
  assert(k >= 1 and k == math.floor(k), "paths must split evenly over the threads")
  local t = #threads
  assert(t < nthreads, "more wrk threads than WRK_THREADS")
  local mine = {}
  for j = 1, k do mine[j] = slot_paths[t * k + j] end
  thread:set("my_paths", mine)
  threads[#threads + 1] = thread
end

-- Thread state: pre-format one request per owned path (headers from -H included).
-- my_paths and issued are globals so that done() can read them with thread:get().
local requests, next_index = {}, 0
issued = {}

function init(_)
  for j, p in ipairs(my_paths) do
    requests[j] = wrk.format(nil, p)
    issued[j] = 0
  end
end

function request()
  next_index = next_index % #requests + 1
  issued[next_index] = issued[next_index] + 1
  return requests[next_index]
end

-- Main state, after the run.
function done(summary, latency, _)
  local issued_min, issued_max, distinct = math.huge, 0, {}
  for _, thread in ipairs(threads) do
    local paths, counts = thread:get("my_paths"), thread:get("issued")
    for j, p in ipairs(paths) do
      distinct[p] = true
      local n = counts[j] or 0
      if n < issued_min then issued_min = n end
      if n > issued_max then issued_max = n end
    end
  end
  local ndistinct = 0
  for _ in pairs(distinct) do ndistinct = ndistinct + 1 end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"durationUs":%.0f,"requests":%.0f,"bytes":%.0f,' ..
    '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},' ..
    '"latencyUs":{"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f,"mean":%.1f},' ..
    '"threads":%d,"distinctPaths":%d,"issuedPerPath":{"min":%.0f,"max":%.0f}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    #threads, ndistinct, issued_min, issued_max))
end
