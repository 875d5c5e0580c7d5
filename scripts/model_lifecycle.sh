#!/usr/bin/env bash
# Model lifecycle proof (issue 16), driven by tritonclient: makes a scikit-learn model no one
# here wrote (skl2onnx), then `inferd model inspect/add/sign`, serve, infer against
# onnxruntime, the repository index, load/unload, a broken and a tampered version, statistics
# and config (scripts/model_lifecycle.py says which checks, in which order). Servers are
# provisioned, started on port 0 and stopped with SIGTERM by scripts/lib (the shared harness).
#
# usage: scripts/model_lifecycle.sh PATH/TO/inferd
#
# The venv is created (or reused) at $MODEL_LIFECYCLE_VENV, default
# ~/.cache/inferd-lifecycle-venv, from scripts/requirements-lifecycle.txt. The run is bounded
# by $MODEL_LIFECYCLE_TIMEOUT seconds (default 600; `timeout` signals the whole process
# group, the servers too). (Not INFERD_* names: inferd refuses unknown INFERD_* variables.)
# Exits with model_lifecycle.py's status (124 on the time limit); 1 if setup fails. The work
# folder (serve logs, the models, keys) is kept when anything failed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/inferd.sh
. "$here/lib/inferd.sh"
die() { echo "model_lifecycle.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 PATH/TO/inferd"
bin="$(realpath "$1")" || die "no such binary: $1"
[ -x "$bin" ] || die "not an executable: $bin"
limit="${MODEL_LIFECYCLE_TIMEOUT:-600}"

# --- venv ----------------------------------------------------------------------------------
venv="${MODEL_LIFECYCLE_VENV:-$HOME/.cache/inferd-lifecycle-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || die "cannot create venv $venv"
fi
t0=$SECONDS
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements-lifecycle.txt" \
    || die "pip install into $venv failed"
echo "model_lifecycle.sh: venv ready in $((SECONDS - t0)) s"

# --- the run ---------------------------------------------------------------------------------
inferd_workdir lifecycle
t0=$SECONDS
status=0
# PYTHONHASHSEED: skl2onnx writes the opset imports in set order; fixed, the same ONNX bytes
# every run (the weights are the same either way: fixed seeds).
PYTHONHASHSEED=0 timeout --kill-after=10 "$limit" \
    "$venv/bin/python" "$here/model_lifecycle.py" --bin "$bin" --work "$inferd_work" \
    || status=$?
[ "$status" -ne 124 ] || echo "model_lifecycle.sh: not done after $limit s" >&2
echo "model_lifecycle.sh: checks took $((SECONDS - t0)) s"
exit "$status"
