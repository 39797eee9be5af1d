-- wrk script: one request, repeated. BENCH_METHOD (default GET), BENCH_TOKEN (a bearer
-- token, if set) and BENCH_BODY (a FHIR JSON body, if set). Prints one line at the end:
-- "requests/s R p50_ms A p99_ms B errors E non2xx N".
wrk.method = os.getenv("BENCH_METHOD") or "GET"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
end
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/fhir+json"
end
wrk.headers["Accept"] = "application/fhir+json"

function done(summary, latency, requests)
    local seconds = summary.duration / 1e6
    io.write(string.format("requests/s %.0f p50_ms %.2f p99_ms %.2f errors %d non2xx %d\n",
        summary.requests / seconds,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.errors.status))
end
