-- wrk script: each request is one professional's GET of one resource, taken in turn
-- from BENCH_READS (lines "token path", e.g. "eyJ… DocumentReference/abc"), so the
-- load spreads over many spaces. Prints p50/p95/p99 at the end.
local reads_file = os.getenv("BENCH_READS")
local reads = {}
for line in io.lines(reads_file) do
    local token, path = line:match("^(%S+)%s+(%S+)$")
    if token then reads[#reads + 1] = { token = token, path = path } end
end
local next_read = 0

function setup(thread)
    thread:set("offset", math.random(#reads))
end

function request()
    next_read = next_read + 1
    local read = reads[((next_read + (offset or 0)) % #reads) + 1]
    return wrk.format("GET", "/" .. read.path, { ["Authorization"] = "Bearer " .. read.token })
end

function done(summary, latency, requests)
    local seconds = summary.duration / 1e6
    io.write(string.format("requests/s %.0f p50_ms %.2f p95_ms %.2f p99_ms %.2f errors %d non2xx %d\n",
        summary.requests / seconds,
        latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.errors.status))
end
