#!/usr/bin/env bash
# Conformance run of inferd against real Open Inference Protocol clients (tritonclient[http],
# requests): provisions a throw-away state folder, serves on a port of the kernel's choosing,
# runs scripts/oip_clients.py, stops the server with SIGTERM and requires it to exit 0
# (scripts/lib/inferd.sh: the harness every script shares).
#
# usage: scripts/oip_clients.sh PATH/TO/inferd [oip_clients.py options, e.g. --strict]
#
# The client venv is created (or reused) at $OIP_CLIENTS_VENV, default
# ~/.cache/inferd-clients-venv, from scripts/requirements-clients.txt. (Not an INFERD_* name:
# inferd refuses to start on an unknown INFERD_* variable.)
# Exits with oip_clients.py's status; 1 if the server fails to start or to stop cleanly. The
# work folder (serve.log) is kept when anything failed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/inferd.sh
. "$here/lib/inferd.sh"
[ $# -ge 1 ] || { echo "usage: $0 PATH/TO/inferd [oip_clients.py options]" >&2; exit 1; }
bin="$1"
shift

# --- client venv -------------------------------------------------------------------------
venv="${OIP_CLIENTS_VENV:-$HOME/.cache/inferd-clients-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "oip_clients.sh: cannot create venv $venv" >&2; exit 1; }
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements-clients.txt" \
    || { echo "oip_clients.sh: pip install into $venv failed" >&2; exit 1; }

# --- serve, check, stop ------------------------------------------------------------------
inferd_workdir oip
inferd_provision "$bin"
# shellcheck disable=SC2119  # (no overrides for this run)
inferd_start
status=0
"$venv/bin/python" "$here/oip_clients.py" --url "$inferd_addr" --key "$inferd_api_key" \
    --ca "$inferd_ca" "$@" || status=$?
inferd_stop
exit "$status"
