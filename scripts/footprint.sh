#!/usr/bin/env bash
# Footprint and single-request latency of a built inferd, with public tools only (curl, wrk,
# /proc), against 127.0.0.1 only, each load bounded in time.
#
#   scripts/footprint.sh [BINARY] [RUNNER...]
#     BINARY  default target/release/inferd
#     RUNNER  optional command prefix, e.g. `qemu-aarch64-static -L /` for an aarch64 binary
#   env DURATION=seconds per latency run (default 10)
#
# Prints: stripped size, time from spawn to ready (the "ready in" log line that the scripts'
# harness, scripts/lib/inferd.sh, waits for), RSS idle with both bundled models, wrk -c1 -t1
# latency (p50/p99, req/s) of POST /predict at 16 and 64 tokens and of OIP infer on digits,
# RSS after the runs (and its high-water mark). Fails if the server does not exit 0 on SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib/inferd.sh
. scripts/lib/inferd.sh
bin=${1:-target/release/inferd}
shift || true
inferd_runner=("$@")
dur=${DURATION:-10}
for tool in curl wrk python3; do
    command -v "$tool" >/dev/null || { echo "footprint.sh: needs $tool (apt-get install -y $tool)" >&2; exit 2; }
done
inferd_workdir footprint
tmp=$inferd_work
inferd_provision "$bin"
key=$inferd_api_key
ca=$inferd_ca

printf 'binary: %s, %d bytes (%.1f MiB)\n' "$bin" "$(stat -c %s "$bin")" "$(echo "$(stat -c %s "$bin") / 1048576" | bc -l)"
# Latency, not quotas, is measured here: rate limits off (the default 600/minute per caller
# would answer most of a 10 s run with 429), access log off.
inferd_start INFERD_RATE_LIMIT_ENABLED=false INFERD_LOG_ACCESS=false
url=$inferd_url
echo "time to ready: $inferd_ready_ms ms (spawn to the \"ready in\" log line, both models, warm-up included)"
# With a runner, the server is its child or the runner itself; qemu-user runs the guest in-process.
rss() { grep -E "^$1:" "/proc/$inferd_pid/status" | awk '{printf "%.1f MiB", $2 / 1024}'; }
echo "RSS idle: $(rss VmRSS)"

text16="The hotel staff were very friendly and the room was clean and quiet."
text64="We stayed three nights at this hotel during a busy conference week in the old city. The staff were friendly and helpful, the room was clean, quiet and larger than expected, and breakfast had plenty of fresh choices. The only downside was the slow elevator, but overall I would happily stay here again soon."
digit='{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]}]}'
lua() { # path body
    cat > "$tmp/req.lua" <<LUA
wrk.method = "POST"
wrk.path = "$1"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "$key"
wrk.body = [[$2]]
LUA
}
run() { # label path body
    lua "$2" "$3"
    # A real response first: a wrong body must not be timed as a fast 4xx.
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -H "X-API-Key: $key" -H 'Content-Type: application/json' -d "$3" "$url$2")
    [ "$code" = 200 ] || { echo "$1: HTTP $code" >&2; exit 1; }
    out=$(timeout -k 5 $((dur + 30)) wrk --latency -t1 -c1 -d"${dur}s" -s "$tmp/req.lua" "$url")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    printf '%-28s p50 %-9s p99 %-9s %8s req/s  non-2xx %s\n' "$1" "$p50" "$p99" "$rps" "${non2xx:-0}"
}
echo "latency, one connection (wrk -t1 -c1 -d${dur}s, TLS, keep-alive):"
run "/predict 16 tokens" /predict "{\"text\": \"$text16\"}"
run "/predict 64 tokens" /predict "{\"text\": \"$text64\"}"
run "OIP infer digits [1,64]" /v2/models/digits/infer "$digit"
echo "RSS after load: $(rss VmRSS) (high-water $(rss VmHWM))"
inferd_stop
