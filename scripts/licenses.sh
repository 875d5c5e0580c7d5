#!/usr/bin/env bash
# THIRD-PARTY-LICENSES: the licence texts of every crate compiled into inferd, generated from
# Cargo.lock by cargo-about (scripts/release/about.toml, scripts/release/about.hbs), then
# checked complete: every crate `cargo tree` puts in the binary (normal dependencies, default
# features) for x86_64 and aarch64 Linux is named under a licence text of its own.
#
#   scripts/licenses.sh OUT        writes OUT, or fails naming the crates it misses
#
# Installs cargo-about (pinned version, `cargo install --locked`, ~6 min cold on 2 busy cores)
# when the one on PATH is missing or another version. Offline: licence texts come from the
# crates' own sources in cargo's registry cache (fetched by `cargo fetch` if absent); a crate
# that ships none gets its SPDX licence's standard text. About a minute once installed
# (cargo-about reads ~300 crates' top-level files and classifies them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/licenses.sh OUT}
say() { echo "licenses.sh: $*"; }
die() { echo "licenses.sh: $*" >&2; exit 1; }

ABOUT_VERSION=0.9.3
targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu)

if [ "$(cargo about --version 2>/dev/null | awk '{print $2}')" != "$ABOUT_VERSION" ]; then
    say "installing cargo-about $ABOUT_VERSION"
    cargo install --locked --features cli --version "$ABOUT_VERSION" cargo-about
fi
cargo fetch --locked >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo about generate --locked --offline --fail \
    --config scripts/release/about.toml \
    --output-file "$tmp/bundle" scripts/release/about.hbs 2>"$tmp/about.log" \
    || { cat "$tmp/about.log" >&2; die "cargo about generate failed"; }

# Completeness: "name version" of each crate in the binary, against those the bundle names
# under a licence (indented lines between "Used by:" and the dashes before the text), each
# section's text at least a few lines long.
for t in "${targets[@]}"; do
    cargo tree --locked --offline -e normal --target "$t" --prefix none --format '{p}' \
        | sed 's/ (.*//; s/ v/ /' | grep -v '^inferd ' || true
done | sort -u >"$tmp/compiled"
[ -s "$tmp/compiled" ] || die "cargo tree listed no crate"
rule=$(printf '=%.0s' {1..80}) dashes=$(printf -- '-%.0s' {1..80})
awk -v rule="$rule" -v dashes="$dashes" '
    function close_section() { if (text && lines < 3) short = 1; text = 0 }
    $0 == rule { close_section(); next }
    $0 == "Used by:" { listing = 1; next }
    $0 == dashes { listing = 0; text = 1; lines = 0; next }
    listing && /^  / { sub(/^  /, ""); print; next }
    text && NF { lines++ }
    END { close_section(); if (short) { print "a licence section without text" > "/dev/stderr"; exit 1 } }
' "$tmp/bundle" | sort -u >"$tmp/covered" || die "a licence section has no text"
missing=$(comm -23 "$tmp/compiled" "$tmp/covered")
if [ -n "$missing" ]; then
    die "no licence text for crate(s) compiled into inferd: $(echo "$missing" | tr '\n' ' ')"
fi
mv "$tmp/bundle" "$out"
say "$out: $(wc -l <"$tmp/compiled") crates compiled in, all covered;" \
    "$(grep -cxF "$rule" "$out") licence texts, $(stat -c %s "$out") bytes"
