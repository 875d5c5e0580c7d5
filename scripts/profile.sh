#!/usr/bin/env bash
# CPU profile of inferd's tensor path under load: the default config that `inferd init`
# writes (TLS, keep-alive, rate limits on with huge quotas as in the benchmark, access log
# off), wrk at c = cores on POST /v2/models/digits/infer from 127.0.0.1, `perf record` on the
# server for the whole run, folded stacks and an SVG flamegraph (inferno, from crates.io).
#
#   scripts/profile.sh OUT_PREFIX [SECONDS]
#
# Writes OUT_PREFIX.folded, OUT_PREFIX.svg and OUT_PREFIX.txt (wrk's summary, the server's CPU
# per request, and the top frames by self time). Needs a release binary with line tables,
# built into its own target dir (the default release profile strips symbols):
#
#   CARGO_TARGET_DIR=/var/tmp/prof-target CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#       CARGO_PROFILE_RELEASE_STRIP=false cargo build --release
#   INFERD_BIN=/var/tmp/prof-target/release/inferd scripts/profile.sh docs/profile/after
#
# The server is provisioned, started and stopped (exit 0 required) by scripts/lib/inferd.sh.
# env: INFERD_BIN (default /var/tmp/prof-target/release/inferd), CONNECTIONS (default cores),
#      PERF_FREQ (samples per second, default 999). perf uses the cpu-clock software event,
#      which works where hardware counters are not exposed (virtual machines).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: scripts/profile.sh OUT_PREFIX [SECONDS]}
secs=${2:-10}
bin=${INFERD_BIN:-/var/tmp/prof-target/release/inferd}
conns=${CONNECTIONS:-$(nproc)}
for tool in perf wrk inferno-collapse-perf inferno-flamegraph python3; do
    command -v "$tool" >/dev/null || {
        echo "profile.sh: needs $tool (apt-get install -y linux-perf wrk; cargo install inferno)" >&2
        exit 2
    }
done
mkdir -p "$(dirname "$out")"
# shellcheck source-path=SCRIPTDIR source=lib/inferd.sh
. "$repo/scripts/lib/inferd.sh"
inferd_workdir profile
tmp=$inferd_work
inferd_provision "$bin"
key=$inferd_api_key
inferd_start INFERD_RATE_LIMIT_DEFAULT=1000000/second INFERD_RATE_LIMIT_ANONYMOUS_PER_IP=1000000/second \
    INFERD_LOG_ACCESS=false
pid=$inferd_pid
addr=$inferd_addr

digit=$(python3 -c 'print(",".join(str(float(i % 17)) for i in range(64)))')
body="{\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[$digit]}]}"
url="https://$addr/v2/models/digits/infer"
# Warm the connections' TLS sessions and the allocator before sampling.
API_KEY=$key BENCH_BODY=$body timeout 10 wrk -t1 -c"$conns" -d1s -s "$repo/scripts/bench/post_json.lua" "$url" >/dev/null

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
# System-wide, then filtered to the server's process: `perf record -p` follows only the
# threads that exist when it attaches, and connection threads start with the load.
perf record -q -e cpu-clock -F "${PERF_FREQ:-999}" --call-graph dwarf,16384 -a \
    -o "$tmp/perf.data" -- sleep "$((secs + 1))" 2> "$tmp/perf.log" &
perf_pid=$!
API_KEY=$key BENCH_BODY=$body timeout $((secs + 10)) \
    wrk -t"$(( conns < $(nproc) ? conns : $(nproc) ))" -c"$conns" -d"${secs}s" \
    -s "$repo/scripts/bench/post_json.lua" "$url" > "$tmp/wrk.txt"
after=$(ticks)
wait "$perf_pid"
requests=$(grep -o 'requests=[0-9]*' "$tmp/wrk.txt" | cut -d= -f2)
perf script -i "$tmp/perf.data" --pid "$pid" 2>/dev/null | inferno-collapse-perf > "$out.folded"
inferno-flamegraph --title "inferd: POST /v2/models/digits/infer, TLS, c=$conns, default config" \
    < "$out.folded" > "$out.svg"
{
    grep -v '^HIST' "$tmp/wrk.txt"
    python3 - "$before" "$after" "$hz" "$requests" <<'EOF'
import sys
before, after, hz, requests = (int(x) for x in sys.argv[1:])
cpu = (after - before) / hz
print(f"server CPU: {cpu:.2f} s for {requests} requests = {cpu / requests * 1e6:.1f} us per request")
EOF
    python3 "$repo/scripts/profile_summary.py" "$out.folded"
} | tee "$out.txt"
inferd_stop
