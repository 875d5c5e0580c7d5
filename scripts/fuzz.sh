#!/usr/bin/env bash
# Fuzzes inferd's input parsers with cargo-fuzz (libFuzzer): builds every target once, then
# runs each for a bounded time and prints its executions and rate. Exits non-zero on any
# crash, panic, timeout or out-of-memory, naming the saved input.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]     (default: every target)
#
# Environment (all optional):
#   FUZZ_TARGET_DIR      build dir shared by every run   (/var/tmp/inferd-fuzz-target; a
#                        CARGO_TARGET_DIR in the environment is not used: the fuzz build's
#                        flags differ from every other build's)
#   FUZZ_TOOLCHAIN       rustup toolchain with -Z flags   (nightly)
#   FUZZ_SANITIZER       none | address                   (none: inferd forbids unsafe code,
#                        so ASan only watches dependencies; it halves the rate and rebuilds)
#   FUZZ_JOBS            targets fuzzed at once           (1)
#   FUZZ_RSS_LIMIT_MB    libFuzzer -rss_limit_mb          (512)
#   FUZZ_MALLOC_LIMIT_MB libFuzzer -malloc_limit_mb       (256; needs a sanitizer's malloc
#                        hooks, so without one the targets' own allocation guard applies:
#                        any single allocation above 64 MiB aborts, see fuzz/src/lib.rs)
#   FUZZ_ARGS            extra libFuzzer flags, e.g. "-runs=1000000"
#   FUZZ_BUILD_ONLY=1    build, do not run
#
# Seeds are read from fuzz/corpus/<target>/ (committed) and copied into a scratch corpus
# under the target dir, which grows from run to run without touching the repository.
# Crash inputs land in $CARGO_TARGET_DIR/fuzz-artifacts/<target>/; keep a minimised one in
# fuzz/regressions/<target>/ once reported. Needs no network once cargo-fuzz is installed
# and the first build has fetched the crates.
set -euo pipefail

secs=${1:-60}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz_dir=$root/fuzz
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-/var/tmp/inferd-fuzz-target}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}
rss=${FUZZ_RSS_LIMIT_MB:-512}
malloc=${FUZZ_MALLOC_LIMIT_MB:-256}

case $secs in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the $toolchain toolchain"
    rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (crates.io)"
    cargo install cargo-fuzz --locked
fi

mapfile -t all < <(cd "$fuzz_dir" && cargo "+$toolchain" fuzz list)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
    # Not `printf | grep -q`: grep leaving early can SIGPIPE printf, and pipefail then
    # reports a target that exists as missing (it failed CI once).
    known=no
    for a in "${all[@]}"; do [ "$a" = "$t" ] && known=yes; done
    [ "$known" = yes ] || { echo "fuzz: no target $t (have: ${all[*]})" >&2; exit 2; }
done

# One build for every target, of inferd without its `inference` feature (fuzz/Cargo.toml: no
# tract, no tokenizers; ~6 CPU-minutes cold, and no ~570k tract coverage counters capping the
# rate, see fuzz/README.md). Release with debug assertions and overflow checks (cargo-fuzz's
# default); 16 codegen units: a shorter first build for a slightly slower run.
started=$(date +%s)
(cd "$fuzz_dir" && cargo "+$toolchain" fuzz build -s "$sanitizer" --release --debug-assertions \
    --codegen-units 16)
echo "fuzz: build took $(($(date +%s) - started)) s (target dir $CARGO_TARGET_DIR)"
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit 0

triple=$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')
bin_dir=$CARGO_TARGET_DIR/$triple/release
logs=$CARGO_TARGET_DIR/fuzz-logs
mkdir -p "$logs"

# Per target: the largest input worth trying (just past the caps the code enforces) and its
# dictionary.
max_len() {
    case $1 in
        http_head) echo 20000 ;;     # past max_header_bytes (16 KiB)
        token) echo 9000 ;;          # past max_token_bytes (8 KiB)
        oip_json) echo 16384 ;;
        config) echo 8192 ;;
        chunked) echo 8192 ;;        # past the 1 KiB size-line cap and /token's 4 KiB body cap
        token_form) echo 5000 ;;     # past MAX_FORM_BYTES (4 KiB)
        onnx_model) echo 16384 ;;    # the digits seed is 12 KiB
        *) echo 4096 ;;
    esac
}
dict() {
    case $1 in
        http_head | body_framing) echo "$fuzz_dir/dict/http.dict" ;;
        oip_json | predict_json) echo "$fuzz_dir/dict/json.dict" ;;
        token | token_mutate) echo "$fuzz_dir/dict/jwt.dict" ;;
        config) echo "$fuzz_dir/dict/toml.dict" ;;
        chunked) echo "$fuzz_dir/dict/chunked.dict" ;;
        token_form) echo "$fuzz_dir/dict/form.dict" ;;
    esac
}

run_one() {
    local t=$1
    local corpus=$CARGO_TARGET_DIR/fuzz-corpus/$t
    local artifacts=$CARGO_TARGET_DIR/fuzz-artifacts/$t
    local log=$logs/$t.log
    mkdir -p "$corpus" "$artifacts"
    if [ -d "$fuzz_dir/corpus/$t" ]; then
        cp "$fuzz_dir/corpus/$t"/* "$corpus"/   # seeds have names, libFuzzer's finds hashes
    fi
    local d
    d=$(dict "$t")
    local status=0
    # shellcheck disable=SC2086
    "$bin_dir/$t" -max_total_time="$secs" -rss_limit_mb="$rss" -malloc_limit_mb="$malloc" \
        -timeout=10 -max_len="$(max_len "$t")" ${d:+-dict="$d"} \
        -artifact_prefix="$artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} \
        "$corpus" >"$log" 2>&1 || status=$?
    local execs rate
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ "$status" -eq 0 ]; then
        printf 'fuzz: %-14s ok     %12s execs  %8s exec/s  corpus %s  (%s s)\n' \
            "$t" "${execs:-?}" "${rate:-?}" "$(find "$corpus" -type f | wc -l)" "$secs"
    else
        printf 'fuzz: %-14s FAILED (exit %s) after %s execs; log %s\n' \
            "$t" "$status" "${execs:-?}" "$log"
        grep -E '^(==[0-9]+== ?ERROR|==inferd-fuzz==|thread .* panicked|.*panicked at)' "$log" | head -3 || true
        grep -A6 -E 'panicked at' "$log" | sed -n '2,7p' || true
        grep -E '^SUMMARY' "$log" || true
        local input
        input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        [ -z "$input" ] || echo "fuzz: input $input; reproduce: $bin_dir/$t $input"
        return 1
    fi
}

failed=()
if [ "$jobs" -le 1 ]; then
    for t in "${targets[@]}"; do
        run_one "$t" || failed+=("$t")
    done
else
    declare -A pids=()
    for t in "${targets[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
        run_one "$t" &
        pids[$t]=$!
    done
    for t in "${!pids[@]}"; do
        wait "${pids[$t]}" || failed+=("$t")
    done
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs under $CARGO_TARGET_DIR/fuzz-artifacts/)" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${secs} s each without a failure"
