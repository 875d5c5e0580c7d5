#!/usr/bin/env bash
# Validates src/api/openapi.json (or the files given) against the OpenAPI 3.1 specification
# with openapi-spec-validator. The Rust test tests/it/openapi.rs holds the document to the
# router; this checks that it is a valid OpenAPI document at all.
#
# usage: scripts/openapi_check.sh [FILE...]
#
# The venv is created (or reused) at $OPENAPI_CHECK_VENV, default ~/.cache/inferd-openapi-venv,
# from scripts/requirements-openapi.txt. Exits non-zero when a document is invalid.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
die() { echo "openapi_check.sh: $*" >&2; exit 1; }

venv="${OPENAPI_CHECK_VENV:-$HOME/.cache/inferd-openapi-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || die "cannot create venv $venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements-openapi.txt" || die "pip install into $venv failed"

[ $# -gt 0 ] || set -- "$here/../src/api/openapi.json"
"$venv/bin/openapi-spec-validator" --schema 3.1 --validation-errors all "$@"
