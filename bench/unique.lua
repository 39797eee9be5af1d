-- wrk script: POST a body whose "__UNIQUE__" is replaced by a value of its own on
-- every request (an ITI-65 Bundle's uniqueId is unique in the store, R-MHD-2). Body
-- and token from the environment.
local counter = 0
local template = os.getenv("BENCH_BODY")
local headers = {
    ["Content-Type"] = "application/fhir+json",
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
}
local threads = 0

function setup(thread)
    threads = threads + 1
    thread:set("thread_id", threads)
end

function request()
    counter = counter + 1
    local unique = tostring(thread_id) .. "." .. tostring(counter) .. "." .. tostring(os.time())
    local body = template:gsub("__UNIQUE__", unique)
    return wrk.format("POST", nil, headers, body)
end
