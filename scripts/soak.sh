#!/usr/bin/env bash
# Soak test: inferd under a mixed load for a fixed time (default 10 minutes at 64 keep-alive
# TLS connections), with auth failures and rate-limit hits (scripts/soak.py says which answer
# each request may get). Samples the server's RSS and open file descriptors every 10 s and
# reports start (after warm-up), end and peak, and the descriptors once the load has gone.
# Traffic goes to 127.0.0.1 only and stops by itself.
#
# usage: scripts/soak.sh PATH/TO/inferd [SECONDS=600] [CONNECTIONS=64]
# Fails (exit 1) on any unexpected answer, on RSS at the end more than 20% (and 8 MiB) above
# its value after the first minute, on descriptors left open after the load, or if the server
# does not exit 0 on SIGTERM.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/inferd.sh
. "$here/lib/inferd.sh"
[ $# -ge 1 ] || { echo "usage: $0 PATH/TO/inferd [SECONDS] [CONNECTIONS]" >&2; exit 1; }
duration="${2:-600}"
connections="${3:-64}"

inferd_workdir soak
inferd_keep=1   # the samples and serve.log, pass or fail
inferd_provision "$1"

# A key with a small quota of its own, for the rate-limit hits.
limited_key="$(inferd_apikey soak-limited predict)"
printf '\n[rate_limit.keys]\n"soak-limited" = "5/second"\n' >>"$inferd_config"

# The load generator is the only client: it names one client address per connection through
# X-Forwarded-For, so per-address limits (failed authentications) apply per connection.
# Per-caller and open-route quotas are raised so that only the two roles meant to meet a
# limit meet one.
inferd_start INFERD_TRUSTED_PROXIES=127.0.0.1 \
    INFERD_RATE_LIMIT_DEFAULT=10000000/minute \
    INFERD_RATE_LIMIT_ANONYMOUS_PER_IP=10000000/minute \
    INFERD_LOG_ACCESS=false

sample() {  # RSS in KiB and open descriptors of the server
    local rss fds
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$inferd_pid/status")"
    fds="$(find "/proc/$inferd_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)"
    echo "$rss $fds"
}
read -r idle_rss idle_fds < <(sample)
echo "soak.sh: idle RSS ${idle_rss} KiB, ${idle_fds} fds"
echo "soak.sh: ${duration} s at ${connections} connections"

python3 "$here/soak.py" --port "${inferd_addr##*:}" --key "$inferd_api_key" --limited-key "$limited_key" \
    --ca "$inferd_ca" --duration "$duration" --connections "$connections" >"$inferd_work/soak.out" &
load_pid=$!
: >"$inferd_work/samples.txt"
start=$SECONDS
while kill -0 "$load_pid" 2>/dev/null; do
    sleep 10
    kill -0 "$load_pid" 2>/dev/null || break
    read -r rss fds < <(sample)
    echo "$((SECONDS - start)) $rss $fds" | tee -a "$inferd_work/samples.txt"
done
wait "$load_pid" && load_rc=0 || load_rc=$?
cat "$inferd_work/soak.out"

# Connections the client closed are reaped by their threads: up to 5 s for that.
read -r after_rss after_fds < <(sample)
deadline=$((SECONDS + 5))
while [ "$after_fds" -gt "$idle_fds" ] && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.1
    read -r after_rss after_fds < <(sample)
done
first="$(awk '$1 >= 60 {print $2; exit}' "$inferd_work/samples.txt")"
first="${first:-$(awk 'NR == 1 {print $2}' "$inferd_work/samples.txt")}"
last="$(awk 'END {print $2}' "$inferd_work/samples.txt")"
peak="$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$inferd_work/samples.txt")"
peak_fds="$(awk 'BEGIN {m = 0} $3 > m {m = $3} END {print m}' "$inferd_work/samples.txt")"
echo "soak.sh: RSS KiB idle ${idle_rss}, after 1 min ${first}, end ${last}, peak ${peak}, after the load ${after_rss}"
echo "soak.sh: fds idle ${idle_fds}, peak ${peak_fds}, after the load ${after_fds}"

status=0
[ "$load_rc" -eq 0 ] || { echo "soak.sh: unexpected answers (see above)" >&2; status=1; }
if [ "$last" -gt $((first + first / 5)) ] && [ "$last" -gt $((first + 8192)) ]; then
    echo "soak.sh: RSS grew from ${first} to ${last} KiB" >&2
    status=1
fi
[ "$after_fds" -le "$idle_fds" ] || { echo "soak.sh: ${after_fds} fds after the load, ${idle_fds} idle" >&2; status=1; }

inferd_stop
echo "soak.sh: $([ "$status" -eq 0 ] && echo PASS || echo FAIL)"
exit "$status"
