#!/usr/bin/env bash
# End-to-end benchmark: inferd against the reference Python stack (FastAPI + uvicorn +
# onnxruntime, ../shared/reference), same bundled models, same load generator (wrk), same
# transports (plain HTTP and TLS), c=1, cores, 4 x cores and 64, in one run. Loads go to 127.0.0.1
# only and are bounded in time; every server started here is stopped on exit.
#
#   scripts/bench.sh
#
# env:
#   INFERD_BIN        an inferd binary to use instead of `cargo build --release`
#   REFERENCE_DIR     the reference stack (default ../shared/reference next to the repo)
#   REFERENCE_VENV    its venv, made if missing (default ~/.cache/inferd-reference-venv)
#   BENCH_SECONDS     seconds per cell (default 10; 2 with BENCH_QUICK=1)
#   BENCH_QUICK=1     smoke run: short cells, short wait for a quiet machine
#   BENCH_QUIET_MAX   seconds to wait for a quiet machine before each transport (default 60)
#   BENCH_REF_WORKERS uvicorn workers per reference process (default: cores)
#   BENCH_REF_ORT_THREADS  onnxruntime intra-op threads per reference worker (default 1)
#   BENCH_CONCURRENCY, BENCH_TRANSPORTS  e.g. "1,2,8,64" and "http,tls" (the defaults: 1, cores,
#                     4 x cores, 64; both transports)
#   TRACT_CPU_ISA     passed to inferd (tract's own knob) and named in the report
#   BENCH_REF_TEXT_MODEL  a second sentiment model.onnx for the reference's text cells
#                     ("reference-dynamic"), or "none". Default: the same encoder quantised the
#                     way onnxruntime prefers (scripts/build_models.py --sentiment-format dynamic),
#                     built once into ~/.cache/inferd-bench-models with the models venv: the
#                     bundled int8-full graph uses s8xs8 MatMulInteger, onnxruntime's slow path.
#
# Prints a Markdown report (cells, start-up and memory, ratios, issue 7's targets met/MISSED)
# and writes it with the raw numbers to scripts/bench/results/<UTC time>.{md,json}.
# Exit 1 when a cell saw non-2xx answers or socket errors.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
here="$repo/scripts/bench"
reference=${REFERENCE_DIR:-$repo/../shared/reference}
venv=${REFERENCE_VENV:-$HOME/.cache/inferd-reference-venv}
quick=${BENCH_QUICK:-}

for tool in wrk python3 timeout; do
    command -v "$tool" >/dev/null || { echo "bench.sh: needs $tool (apt-get install -y $tool)" >&2; exit 2; }
done
[ -f "$reference/app.py" ] || { echo "bench.sh: no reference stack at $reference (set REFERENCE_DIR)" >&2; exit 2; }

if [ -n "${INFERD_BIN:-}" ]; then
    bin=$(realpath "$INFERD_BIN")
else
    (cd "$repo" && cargo build --release)
    bin="$repo/target/release/inferd"
fi

if [ ! -x "$venv/bin/uvicorn" ] || ! "$venv/bin/python" -c 'import tokenizers' 2>/dev/null; then
    echo "bench.sh: making the reference venv in $venv (exact pins)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r "$reference/requirements.txt" -r "$here/requirements-reference-extra.txt"
fi

dynamic=${BENCH_REF_TEXT_MODEL:-$HOME/.cache/inferd-bench-models/sentiment/model.onnx}
if [ "$dynamic" = none ]; then
    dynamic=
elif [ ! -f "$dynamic" ] && [ -z "${BENCH_REF_TEXT_MODEL:-}" ]; then
    echo "bench.sh: building the dynamic-int8 sentiment model for the reference (once, a few minutes)" >&2
    models_venv=$HOME/.cache/inferd-models-venv
    if [ ! -x "$models_venv/bin/python" ]; then
        python3 -m venv "$models_venv"
        "$models_venv/bin/pip" install --quiet -r "$repo/scripts/requirements-models.txt"
    fi
    "$models_venv/bin/python" "$repo/scripts/build_models.py" --only sentiment --sentiment-format dynamic \
        --out "$HOME/.cache/inferd-bench-models" >&2
fi
[ -z "$dynamic" ] || [ -f "$dynamic" ] || { echo "bench.sh: no such model: $dynamic" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/inferd-bench.XXXXXX")
driver=
# shellcheck disable=SC2317  # (called by the trap)
cleanup() {
    # The driver stops its servers itself; this is for a driver that died first. Each line of
    # pgids is a process group the driver started (setsid) and has not stopped yet, so only
    # those are signalled.
    if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
        kill -TERM "$driver" 2>/dev/null || true
        wait "$driver" 2>/dev/null || true
    fi
    if [ -f "$work/pgids" ]; then
        while read -r pgid; do
            kill -KILL -- "-$pgid" 2>/dev/null || true
        done < "$work/pgids"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$quick" ]; then seconds=${BENCH_SECONDS:-2} quiet_max=${BENCH_QUIET_MAX:-10}
else seconds=${BENCH_SECONDS:-10} quiet_max=${BENCH_QUIET_MAX:-60}; fi
# The command as run, with the settings that change results, for the report.
command="$({ env | grep -E '^(INFERD_BIN|BENCH_[A-Z_]+|TRACT_[A-Z_]+)=' || true; } | sort | tr '\n' ' ')scripts/bench.sh"
args=(--inferd "$bin" --venv "$venv" --reference "$reference" --work "$work"
      --results "$here/results" --seconds "$seconds" --quiet-max "$quiet_max" --command "$command"
      --ref-workers "${BENCH_REF_WORKERS:-$(nproc)}" --ref-ort-threads "${BENCH_REF_ORT_THREADS:-1}"
      --concurrency "${BENCH_CONCURRENCY:-1,$(nproc),$((4 * $(nproc))),64}" --transports "${BENCH_TRANSPORTS:-http,tls}"
      --ref-text-model "$dynamic")
if [ -n "$quick" ]; then args+=(--quick); fi

python3 "$here/bench.py" "${args[@]}" &
driver=$!
rc=0
wait "$driver" || rc=$?
driver=
exit "$rc"
