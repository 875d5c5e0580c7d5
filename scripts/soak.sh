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
die() { echo "soak.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: $0 PATH/TO/inferd [SECONDS] [CONNECTIONS]"
bin="$(realpath "$1")" || die "no such binary: $1"
duration="${2:-600}"
connections="${3:-64}"

export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost"
work="$(mktemp -d "${TMPDIR:-/tmp}/inferd-soak.XXXXXX")"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
    echo "soak.sh: logs in $work" >&2
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin" init "$work/state" --listen "127.0.0.1:$port" --models "$here/../models" --json >"$work/init.json"
read -r config api_key ca_cert < <(python3 -c 'import json, sys
d = json.load(open(sys.argv[1])); print(d["config"], d["api_key"], d["ca_cert"])' "$work/init.json")

# A key with a small quota of its own, for the rate-limit hits.
"$bin" apikey new --id soak-limited --scope predict >"$work/limited.txt"
limited_key="$(sed -n 's/^key (shown once): //p' "$work/limited.txt")"
sed -n '/^\[\[key\]\]/,$p' "$work/limited.txt" >>"$work/state/api_keys.toml"
printf '\n[rate_limit.keys]\n"soak-limited" = "5/second"\n' >>"$config"

# The load generator is the only client: it names one client address per connection through
# X-Forwarded-For, so per-address limits (failed authentications) apply per connection.
# Per-caller and open-route quotas are raised so that only the two roles meant to meet a
# limit meet one.
INFERD_TRUSTED_PROXIES=127.0.0.1 \
INFERD_RATE_LIMIT_DEFAULT=10000000/minute \
INFERD_RATE_LIMIT_ANONYMOUS_PER_IP=10000000/minute \
INFERD_LOG_ACCESS=false \
    "$bin" serve --config "$config" 2>"$work/serve.log" &
server_pid=$!
deadline=$((SECONDS + 120))
until grep -qs "ready in .* ms" "$work/serve.log"; do
    kill -0 "$server_pid" 2>/dev/null || { tail "$work/serve.log" >&2; die "server exited"; }
    [ "$SECONDS" -lt "$deadline" ] || die "server not ready after 120 s"
    sleep 0.2
done

sample() {  # RSS in KiB and open descriptors of the server
    local rss fds
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")"
    fds="$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)"
    echo "$rss $fds"
}
read -r idle_rss idle_fds < <(sample)
echo "soak.sh: inferd (pid $server_pid) ready on 127.0.0.1:$port; idle RSS ${idle_rss} KiB, ${idle_fds} fds"
echo "soak.sh: ${duration} s at ${connections} connections"

python3 "$here/soak.py" --port "$port" --key "$api_key" --limited-key "$limited_key" \
    --ca "$ca_cert" --duration "$duration" --connections "$connections" >"$work/soak.out" &
load_pid=$!
: >"$work/samples.txt"
start=$SECONDS
while kill -0 "$load_pid" 2>/dev/null; do
    sleep 10
    kill -0 "$load_pid" 2>/dev/null || break
    read -r rss fds < <(sample)
    echo "$((SECONDS - start)) $rss $fds" | tee -a "$work/samples.txt"
done
wait "$load_pid" && load_rc=0 || load_rc=$?
cat "$work/soak.out"

sleep 1   # connections closed by the client are reaped by their threads
read -r after_rss after_fds < <(sample)
first="$(awk '$1 >= 60 {print $2; exit}' "$work/samples.txt")"
first="${first:-$(awk 'NR == 1 {print $2}' "$work/samples.txt")}"
last="$(awk 'END {print $2}' "$work/samples.txt")"
peak="$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$work/samples.txt")"
peak_fds="$(awk 'BEGIN {m = 0} $3 > m {m = $3} END {print m}' "$work/samples.txt")"
echo "soak.sh: RSS KiB idle ${idle_rss}, after 1 min ${first}, end ${last}, peak ${peak}, after the load ${after_rss}"
echo "soak.sh: fds idle ${idle_fds}, peak ${peak_fds}, after the load ${after_fds}"

status=0
[ "$load_rc" -eq 0 ] || { echo "soak.sh: unexpected answers (see above)" >&2; status=1; }
if [ "$last" -gt $((first + first / 5)) ] && [ "$last" -gt $((first + 8192)) ]; then
    echo "soak.sh: RSS grew from ${first} to ${last} KiB" >&2
    status=1
fi
[ "$after_fds" -le "$idle_fds" ] || { echo "soak.sh: ${after_fds} fds after the load, ${idle_fds} idle" >&2; status=1; }

kill -TERM "$server_pid"
wait "$server_pid" && rc=0 || rc=$?
server_pid=""
[ "$rc" -eq 0 ] || { echo "soak.sh: server exited $rc after SIGTERM" >&2; status=1; }
echo "soak.sh: $([ "$status" -eq 0 ] && echo PASS || echo FAIL)"
exit "$status"
