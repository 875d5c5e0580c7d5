#!/usr/bin/env bash
# Real-browser CORS check of inferd with headless Chromium: finds (or installs) the browser,
# then runs scripts/cors_browser.py, which binds two local page origins, serves inferd on a
# port of the kernel's choosing with INFERD_CORS_ALLOWED_ORIGINS set to one of them (through
# scripts/lib/inferd_harness.py, the harness every script shares), checks that pages from
# the allowed origin get their preflighted POST /predict through and pages from the other
# origin are blocked by the browser (see that file's header for the full list), stops the
# server with SIGTERM and requires it to exit 0.
#
# usage: scripts/cors_browser.sh PATH/TO/inferd
#
# Needs python3 (stdlib only) and Debian's chromium; if `chromium` is not on PATH and we are
# root, it is installed with apt-get. $CORS_BROWSER_CHROMIUM overrides the browser binary.
# (Not an INFERD_* name: inferd refuses to start on an unknown INFERD_* variable.)
# Exits with cors_browser.py's status (1 also when the server fails to start or to stop
# cleanly); 1 if setup fails. The work folder (serve.log, pages.log, chromium-*.log) is kept
# when anything failed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/inferd.sh
. "$here/lib/inferd.sh"
die() { echo "cors_browser.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 PATH/TO/inferd"
bin="$(realpath "$1")" || die "no such binary: $1"
[ -x "$bin" ] || die "not an executable: $bin"
command -v python3 >/dev/null || die "python3 not found"

page_timeout=30     # seconds per browser page (cors_browser.py --timeout)

inferd_workdir cors

# --- browser -----------------------------------------------------------------------------
chromium="${CORS_BROWSER_CHROMIUM:-}"
if [ -z "$chromium" ]; then
    if ! command -v chromium >/dev/null; then
        [ "$(id -u)" = 0 ] || die "chromium not on PATH (apt-get install chromium, as root)"
        echo "cors_browser.sh: installing chromium with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq chromium >"$inferd_work/apt.log" 2>&1 \
            || { apt-get update -qq >>"$inferd_work/apt.log" 2>&1 \
                 && apt-get install -y -qq chromium >>"$inferd_work/apt.log" 2>&1; } \
            || { tail -n 20 "$inferd_work/apt.log" >&2; die "apt-get install chromium failed"; }
    fi
    chromium="$(command -v chromium)"
fi
echo "cors_browser.sh: $("$chromium" --version 2>/dev/null | head -n 1)"

# --- serve, check, stop (cors_browser.py) --------------------------------------------------
python3 "$here/cors_browser.py" --inferd "$bin" --work "$inferd_work" \
    --chromium "$chromium" --timeout "$page_timeout"
