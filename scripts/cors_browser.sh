#!/usr/bin/env bash
# Real-browser CORS check of inferd with headless Chromium: provisions a throw-away state
# folder, serves on a free 127.0.0.1 port with INFERD_CORS_ALLOWED_ORIGINS set to one of two
# local page origins, runs scripts/cors_browser.py (pages from the allowed origin must get
# their preflighted POST /predict through, pages from the other origin must be blocked by
# the browser; see that file's header for the full list), stops the server with SIGTERM and
# requires it to exit 0.
#
# usage: scripts/cors_browser.sh PATH/TO/inferd
#
# Needs python3 (stdlib only) and Debian's chromium; if `chromium` is not on PATH and we are
# root, it is installed with apt-get. $CORS_BROWSER_CHROMIUM overrides the browser binary.
# (Not an INFERD_* name: inferd refuses to start on an unknown INFERD_* variable.)
# Exits with cors_browser.py's status; 1 if setup fails or the server fails to start or to
# stop cleanly.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
die() { echo "cors_browser.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 PATH/TO/inferd"
bin="$(realpath "$1")" || die "no such binary: $1"
[ -x "$bin" ] || die "not an executable: $bin"
command -v python3 >/dev/null || die "python3 not found"
py=python3

start_timeout=60    # seconds for the "ready in" line (port open, then model load + warm-up)
stop_timeout=30     # seconds for exit after SIGTERM (server drains up to shutdown_timeout_ms)
page_timeout=30     # seconds per browser page (cors_browser.py --timeout)

# Only loopback traffic: keep any configured proxy out of it.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

work="$(mktemp -d "${TMPDIR:-/tmp}/inferd-cors.XXXXXX")"
server_pid=""
keep=0
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then
        echo "cors_browser.sh: kept $work (serve.log, pages.log, chromium-*.log inside)" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'keep=1; exit 130' INT TERM

# --- browser -----------------------------------------------------------------------------
chromium="${CORS_BROWSER_CHROMIUM:-}"
if [ -z "$chromium" ]; then
    if ! command -v chromium >/dev/null; then
        [ "$(id -u)" = 0 ] || die "chromium not on PATH (apt-get install chromium, as root)"
        echo "cors_browser.sh: installing chromium with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq chromium >"$work/apt.log" 2>&1 \
            || { apt-get update -qq >>"$work/apt.log" 2>&1 \
                 && apt-get install -y -qq chromium >>"$work/apt.log" 2>&1; } \
            || { keep=1; tail -n 20 "$work/apt.log" >&2; die "apt-get install chromium failed"; }
    fi
    chromium="$(command -v chromium)"
fi
echo "cors_browser.sh: $("$chromium" --version 2>/dev/null | head -n 1)"

# --- provision ---------------------------------------------------------------------------
# Three distinct free ports: inferd, page origin A (allowed), page origin B (not allowed).
read -r port port_a port_b < <("$py" -c 'import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()')

"$bin" init "$work/state" --listen "127.0.0.1:$port" --models "$here/../models" --json \
    >"$work/init.json" 2>"$work/init.err" \
    || { keep=1; cat "$work/init.err" >&2; die "inferd init failed"; }
read -r config api_key ca_cert < <("$py" -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(d["config"], d["api_key"], d["ca_cert"])' "$work/init.json") \
    || { keep=1; die "cannot read init output $work/init.json"; }

# --- serve -------------------------------------------------------------------------------
: >"$work/serve.log"   # exists before the first poll (the child opens it asynchronously)
INFERD_CORS_ALLOWED_ORIGINS="http://127.0.0.1:$port_a" \
INFERD_RATE_LIMIT_DEFAULT="100000/minute" \
    "$bin" serve --config "$config" >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!

deadline=$((SECONDS + start_timeout))
until grep -qs "ready in .* ms" "$work/serve.log"; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        wait "$server_pid" && rc=0 || rc=$?
        server_pid=""
        keep=1
        tail -n 20 "$work/serve.log" >&2
        die "inferd serve exited ($rc) before listening"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        keep=1
        tail -n 20 "$work/serve.log" >&2
        die "inferd serve not listening after ${start_timeout}s"
    fi
    sleep 0.2
done
echo "cors_browser.sh: inferd (pid $server_pid) listening on https://127.0.0.1:$port," \
     "CORS origin http://127.0.0.1:$port_a"

# --- check -------------------------------------------------------------------------------
status=0
"$py" "$here/cors_browser.py" --url "https://127.0.0.1:$port" --key "$api_key" --ca "$ca_cert" \
    --port-a "$port_a" --port-b "$port_b" --log "$work/serve.log" --work "$work" \
    --chromium "$chromium" --timeout "$page_timeout" \
    || status=$?

# --- stop --------------------------------------------------------------------------------
kill -TERM "$server_pid"
deadline=$((SECONDS + stop_timeout))
while kill -0 "$server_pid" 2>/dev/null; do
    # A reaped child fails kill -0; a zombie still passes it, so ask ps as well.
    [ "$(ps -o stat= -p "$server_pid" 2>/dev/null | cut -c1)" = "Z" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
        keep=1
        tail -n 20 "$work/serve.log" >&2
        die "inferd serve still running ${stop_timeout}s after SIGTERM"
    fi
    sleep 0.2
done
wait "$server_pid" && server_rc=0 || server_rc=$?
server_pid=""
if [ "$server_rc" -ne 0 ]; then
    keep=1
    tail -n 20 "$work/serve.log" >&2
    die "inferd serve exited $server_rc after SIGTERM (want 0)"
fi
echo "cors_browser.sh: inferd exited 0 after SIGTERM"

[ "$status" -eq 0 ] || keep=1
exit "$status"
