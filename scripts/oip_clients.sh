#!/usr/bin/env bash
# Conformance run of inferd against real Open Inference Protocol clients (tritonclient[http],
# requests): provisions a throw-away state folder, serves on a free 127.0.0.1 port, runs
# scripts/oip_clients.py, stops the server with SIGTERM and requires it to exit 0.
#
# usage: scripts/oip_clients.sh PATH/TO/inferd [oip_clients.py options, e.g. --strict]
#
# The client venv is created (or reused) at $OIP_CLIENTS_VENV, default
# ~/.cache/inferd-clients-venv, from scripts/requirements-clients.txt. (Not an INFERD_* name:
# inferd refuses to start on an unknown INFERD_* variable.)
# Exits with oip_clients.py's status; 1 if the server fails to start or to stop cleanly.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
die() { echo "oip_clients.sh: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 PATH/TO/inferd [oip_clients.py options]"
bin="$(realpath "$1")" || die "no such binary: $1"
shift
[ -x "$bin" ] || die "not an executable: $bin"

start_timeout=120   # seconds for the "ready in" line (port open, then model load + warm-up)
stop_timeout=30     # seconds for exit after SIGTERM (server drains up to shutdown_timeout_ms)

# --- client venv -------------------------------------------------------------------------
venv="${OIP_CLIENTS_VENV:-$HOME/.cache/inferd-clients-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || die "cannot create venv $venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements-clients.txt" || die "pip install into $venv failed"
py="$venv/bin/python"

# Only loopback traffic: keep any configured proxy out of it.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

# --- provision ---------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/inferd-oip.XXXXXX")"
server_pid=""
keep=0
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then
        echo "oip_clients.sh: kept $work (logs inside)" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'keep=1; exit 130' INT TERM

port="$("$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')"

"$bin" init "$work/state" --listen "127.0.0.1:$port" --models "$here/../models" --json \
    >"$work/init.json" 2>"$work/init.err" \
    || { keep=1; cat "$work/init.err" >&2; die "inferd init failed"; }
read -r config api_key ca_cert < <("$py" -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(d["config"], d["api_key"], d["ca_cert"])' "$work/init.json") \
    || { keep=1; die "cannot read init output $work/init.json"; }

# --- serve -------------------------------------------------------------------------------
: >"$work/serve.log"   # exists before the first poll (the child opens it asynchronously)
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
echo "oip_clients.sh: inferd (pid $server_pid) listening on https://127.0.0.1:$port"

# --- check -------------------------------------------------------------------------------
status=0
"$py" "$here/oip_clients.py" --url "127.0.0.1:$port" --key "$api_key" --ca "$ca_cert" "$@" \
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
echo "oip_clients.sh: inferd exited 0 after SIGTERM"

[ "$status" -eq 0 ] || keep=1
exit "$status"
