-- wrk script: authenticated GET (token from the environment).
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
