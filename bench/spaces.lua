-- wrk script: each request is one professional's search of one of their patients'
-- spaces, taken in turn from BENCH_PAIRS (lines "token patient-id"), so the load
-- spreads over many spaces. Prints p50/p95/p99 at the end.
local pairs_file = os.getenv("BENCH_PAIRS")
local query = os.getenv("BENCH_QUERY") or "&_count=20&_total=accurate"
local pairs = {}
for line in io.lines(pairs_file) do
    local token, patient = line:match("^(%S+)%s+(%S+)$")
    if token then pairs[#pairs + 1] = { token = token, patient = patient } end
end
local next_pair = 0

function setup(thread)
    thread:set("offset", math.random(#pairs))
end

function request()
    next_pair = next_pair + 1
    local pair = pairs[((next_pair + (offset or 0)) % #pairs) + 1]
    return wrk.format("GET", "/DocumentReference?patient=" .. pair.patient .. query,
        { ["Authorization"] = "Bearer " .. pair.token })
end

function done(summary, latency, requests)
    local seconds = summary.duration / 1e6
    io.write(string.format("requests/s %.0f p50_ms %.2f p95_ms %.2f p99_ms %.2f errors %d non2xx %d\n",
        summary.requests / seconds,
        latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.errors.status))
end
