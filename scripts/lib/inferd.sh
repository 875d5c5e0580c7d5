# shellcheck shell=bash disable=SC2034  # (its variables are for the caller)
# The one way scripts provision, start, wait for and stop an inferd (sourced, bash 5).
# scripts/lib/inferd_harness.py does the same steps the same way for Python callers.
#
#   . "$(dirname "$0")/lib/inferd.sh"
#   inferd_workdir NAME            # $inferd_work = a fresh mktemp folder; on exit the server is
#                                  # killed if still up, the folder removed on success and kept
#                                  # (and named) on failure or with inferd_keep=1
#   inferd_provision BIN [MODELS]  # `BIN init $inferd_work/state --listen 127.0.0.1:0 --json`;
#                                  # sets inferd_bin inferd_state inferd_config
#                                  # inferd_api_key (the admin key) inferd_ca
#   key=$(inferd_apikey ID SCOPE)  # a further API key, appended to the state's keys file
#   inferd_start [NAME=VALUE...]   # serve with INFERD_* and RUST_LOG removed from the
#                                  # environment and these set instead; returns once ready; sets
#                                  # inferd_pid inferd_url (https://127.0.0.1:PORT) inferd_addr
#                                  # (127.0.0.1:PORT) inferd_ready_ms (spawn to ready)
#   inferd_stop                    # SIGTERM; requires exit status 0
#
# Readiness is the log, as in tests/it/support.rs: the server binds port 0 and logs "inferd X
# listening on https://ADDR (loading models)", then "ready in N ms" once every model is loaded
# and warmed up. No port is picked and released (nothing can take it in between), and no
# client needs the CA, a key or a client certificate to see readiness. Both lines are at info,
# the level `init` writes: RUST_LOG is removed as INFERD_* are (the server refuses unknown
# INFERD_* names, and a caller's INFERD_BIN is one), and no caller may override log.level.
#
# Any failure (init, start, a server that dies or is not ready within inferd_start_timeout
# seconds, one that outlives SIGTERM by inferd_stop_timeout seconds or exits non-zero) prints
# the log's tail and exits 1. Call the functions directly, not inside $(...), except
# inferd_apikey. Settings: inferd_runner (array, a command prefix such as
# `qemu-aarch64-static -L /`), inferd_start_timeout (120), inferd_stop_timeout (30),
# inferd_log (default $inferd_work/serve.log), inferd_keep.

inferd_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
inferd_name=${0##*/}
inferd_runner=()
inferd_start_timeout=120
inferd_stop_timeout=30
inferd_keep=0
inferd_pid=
inferd_work=
inferd_log=

# Every caller talks to 127.0.0.1 only: keep any configured proxy out of it.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

inferd_workdir() {  # NAME
    inferd_work=$(mktemp -d "${TMPDIR:-/tmp}/inferd-$1.XXXXXX")
    inferd_log=$inferd_work/serve.log
    trap '_inferd_exit $?' EXIT
    trap 'exit 130' INT TERM
}

inferd_provision() {  # BIN [MODELS]
    [ -n "$inferd_work" ] || _inferd_fail "inferd_provision before inferd_workdir"
    inferd_bin=$(realpath "$1") || _inferd_fail "no such binary: $1"
    [ -x "$inferd_bin" ] || _inferd_fail "not an executable: $inferd_bin"
    inferd_state=$inferd_work/state
    _inferd_env_unsets
    env "${_inferd_unset[@]}" "${inferd_runner[@]}" "$inferd_bin" init "$inferd_state" \
        --listen 127.0.0.1:0 --models "${2:-$inferd_repo/models}" --json \
        >"$inferd_work/init.json" 2>"$inferd_work/init.err" \
        || { cat "$inferd_work/init.err" >&2; _inferd_fail "inferd init failed"; }
    read -r inferd_config inferd_api_key inferd_ca < <(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(d["config"], d["api_key"], d["ca_cert"])' "$inferd_work/init.json") \
        || _inferd_fail "cannot read $inferd_work/init.json"
}

inferd_apikey() {  # ID SCOPE: prints the new key
    local out
    _inferd_env_unsets
    out=$(env "${_inferd_unset[@]}" "${inferd_runner[@]}" "$inferd_bin" \
        apikey new --id "$1" --scope "$2") \
        || _inferd_fail "inferd apikey new failed"
    printf '\n%s\n' "$(sed -n '/^\[\[key\]\]/,$p' <<<"$out")" >>"$inferd_state/api_keys.toml"
    sed -n 's/^key (shown once): //p' <<<"$out"
}

inferd_start() {  # [NAME=VALUE...]
    [ -n "${inferd_config:-}" ] || _inferd_fail "inferd_start before inferd_provision"
    [ -z "$inferd_pid" ] || _inferd_fail "inferd_start: already running (pid $inferd_pid)"
    : >"$inferd_log"
    local t0=${EPOCHREALTIME/[.,]/} deadline=$((SECONDS + inferd_start_timeout)) listening rc
    _inferd_env_unsets
    # A simple command, so that $! is the process that becomes the server (env execs it).
    env "${_inferd_unset[@]}" "$@" "${inferd_runner[@]}" \
        "$inferd_bin" serve --config "$inferd_config" >>"$inferd_log" 2>&1 &
    inferd_pid=$!
    inferd_url=
    until [ -n "$inferd_url" ] && grep -Eq 'ready in [0-9]+ ms' "$inferd_log"; do
        if [ -z "$inferd_url" ]; then
            listening=$(grep -Eom1 'listening on https?://[^ ]+' "$inferd_log" || true)
            inferd_url=${listening#listening on }
        fi
        if ! _inferd_alive; then
            wait "$inferd_pid" && rc=0 || rc=$?
            inferd_pid=
            _inferd_fail "inferd serve exited ($rc) before it was ready"
        fi
        [ "$SECONDS" -lt "$deadline" ] \
            || _inferd_fail "inferd serve not ready after ${inferd_start_timeout} s"
        sleep 0.02
    done
    inferd_addr=${inferd_url#*://}
    inferd_ready_ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
    echo "$inferd_name: inferd (pid $inferd_pid) ready on $inferd_url after $inferd_ready_ms ms"
}

inferd_stop() {
    [ -n "$inferd_pid" ] || _inferd_fail "inferd_stop: no server running"
    local deadline=$((SECONDS + inferd_stop_timeout)) rc
    if ! _inferd_alive; then
        wait "$inferd_pid" && rc=0 || rc=$?
        inferd_pid=
        _inferd_fail "inferd serve exited ($rc) before SIGTERM"
    fi
    kill -TERM "$inferd_pid"
    while _inferd_alive; do
        [ "$SECONDS" -lt "$deadline" ] \
            || _inferd_fail "inferd serve still running ${inferd_stop_timeout} s after SIGTERM"
        sleep 0.02
    done
    wait "$inferd_pid" && rc=0 || rc=$?
    inferd_pid=
    [ "$rc" -eq 0 ] || _inferd_fail "inferd serve exited $rc after SIGTERM (want 0)"
    echo "$inferd_name: inferd exited 0 after SIGTERM"
}

# --- internals ----------------------------------------------------------------------------

_inferd_env_unsets() {  # sets _inferd_unset: env's options that remove INFERD_* and RUST_LOG
    local name
    _inferd_unset=()
    for name in $(compgen -e); do
        case $name in INFERD_* | RUST_LOG) _inferd_unset+=(-u "$name") ;; esac
    done
}

_inferd_alive() {  # the server runs (a zombie not yet reaped does not count)
    local stat
    { read -r stat <"/proc/$inferd_pid/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

_inferd_fail() {  # MESSAGE: says it with the log's tail, then exits 1 (the EXIT trap cleans up)
    echo "$inferd_name: $*" >&2
    if [ -s "${inferd_log:-}" ]; then
        echo "$inferd_name: last lines of $inferd_log:" >&2
        tail -n 20 "$inferd_log" >&2
    fi
    exit 1
}

_inferd_exit() {  # STATUS (the EXIT trap)
    if [ -n "$inferd_pid" ]; then
        kill -KILL "$inferd_pid" 2>/dev/null || true
        wait "$inferd_pid" 2>/dev/null || true
    fi
    if [ "$1" -ne 0 ] || [ "$inferd_keep" = 1 ]; then
        echo "$inferd_name: kept $inferd_work (logs inside)" >&2
    else
        rm -rf "$inferd_work"
    fi
}
