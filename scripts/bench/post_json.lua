-- wrk script for scripts/bench.sh: POST the JSON body in env BENCH_BODY to the URL's path,
-- with X-API-Key from env API_KEY. The same script drives inferd and the reference.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("API_KEY") or error("set env API_KEY")
wrk.body = os.getenv("BENCH_BODY") or error("set env BENCH_BODY")

-- wrk 4.1 "corrects" its latency histogram before printing it (stats_correct in src/wrk.c:
-- every sample longer than twice the mean request interval adds made-up samples below it).
-- The faster the server, the more samples one stall makes up, so its percentiles cannot be
-- compared across servers. Print the histogram itself, one "HIST" line of microseconds:count;
-- bench.py takes the correction back out exactly. `latency` is a userdata holding a
-- `stats *` (src/stats.h: uint64_t count, limit, min, max, data[]); LuaJIT's ffi reads it.
local ffi = require("ffi")

function done(summary, latency, requests)
    local s = ffi.cast("uint64_t **", latency)[0]
    local min, max, out = tonumber(s[2]), tonumber(s[3]), {}
    for v = min, max do
        local n = tonumber(s[4 + v])
        if n > 0 then out[#out + 1] = v .. ":" .. n end
    end
    io.write("HIST duration_us=", summary.duration, " requests=", summary.requests, " ",
             table.concat(out, ","), "\n")
end
