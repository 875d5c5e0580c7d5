#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (policy in deny.toml): licenses (permissive only),
# bans (no second HTTP/TLS stack, no wildcard versions; duplicate versions reported),
# sources (crates.io only), and RustSec advisories. Installs cargo-deny if missing.
#
# Advisories, in this order:
#   1. the live RustSec database (a git repository on GitHub), fetched with a time bound;
#   2. else the offline snapshot at $INFERD_ADVISORY_DB, or ../shared/rustsec-advisory-db
#      relative to the repository root (or to the local checkout it was cloned from): copied to a temporary git repository dated to the
#      snapshot's own date, so that cargo-deny's staleness limit (deny.toml,
#      maximum-db-staleness) measures the snapshot's real age; the date used is printed;
#   3. else the check is reported as SKIPPED, loudly: never a silent pass.
# An advisory that deny.toml does not accept fails the script, whichever database was used.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "supply_chain.sh: $*"; }

if ! command -v cargo-deny >/dev/null 2>&1; then
    say "installing cargo-deny (crates.io)"
    cargo install cargo-deny --locked --quiet
fi
cargo deny --version

cargo deny --locked check --hide-inclusion-graph licenses bans sources 2>&1 | grep -v "^ *[│├└╭╰┌]\|^ *$" || exit 1

tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

# 1. The live database.
if timeout 120 cargo deny --locked fetch db >"$tmp/fetch.log" 2>&1; then
    say "advisories: live RustSec database, fetched $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if ! cargo deny --locked --offline check advisories; then
        say "advisories FAILED against the live RustSec database (an advisory deny.toml does" \
            "not accept)" >&2
        exit 1
    fi
    say "advisories ok as of today (live RustSec database)"
    exit 0
fi
say "the live RustSec database could not be fetched; last lines:"
grep -v "^ *$" "$tmp/fetch.log" | tail -n 3 | sed 's/^/    /'

# 2. The offline snapshot.
if [ -n "${INFERD_ADVISORY_DB:-}" ]; then
    snapshot=$INFERD_ADVISORY_DB
    if [ ! -d "$snapshot/crates" ]; then
        say "INFERD_ADVISORY_DB=$snapshot is not a RustSec advisory database (no crates/ folder)" >&2
        exit 1
    fi
else
    # Next to the repository, or next to the checkout this clone was made from (a CI clone
    # of a local checkout finds the snapshot its origin sits beside).
    snapshot=../shared/rustsec-advisory-db
    origin=$(git config --get remote.origin.url 2>/dev/null || true)
    if [ ! -d "$snapshot/crates" ] && [ -n "$origin" ] && [ -d "$origin/../shared/rustsec-advisory-db/crates" ]; then
        snapshot=$origin/../shared/rustsec-advisory-db
    fi
fi
if [ ! -d "$snapshot/crates" ]; then
    say "advisories SKIPPED: the RustSec database could not be fetched (no network beyond" \
        "the package registries here) and no snapshot was found (INFERD_ADVISORY_DB unset," \
        "no $snapshot)"
    exit 0
fi
snapshot=$(cd "$snapshot" && pwd)

# The snapshot's date: SNAPSHOT.md ("at commit <sha> (committed YYYY-MM-DD)"), else the
# snapshot's own git history, else the newest advisory it holds.
commit="" snapdate=""
if [ -f "$snapshot/SNAPSHOT.md" ]; then
    commit=$(grep -o 'commit [0-9a-f]\{40\}' "$snapshot/SNAPSHOT.md" | head -n 1 | cut -d' ' -f2 || true)
    snapdate=$(grep -o '(committed [0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\})' "$snapshot/SNAPSHOT.md" | head -n 1 | tr -dc '0-9-' || true)
    datesource="SNAPSHOT.md"
fi
if [ -z "$snapdate" ] && [ -e "$snapshot/.git" ]; then
    commit=$(git -C "$snapshot" log -1 --format=%H 2>/dev/null || true)
    snapdate=$(git -C "$snapshot" log -1 --format=%cs 2>/dev/null || true)
    datesource="the snapshot's git history"
fi
if [ -z "$snapdate" ]; then
    snapdate=$(grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$snapshot/crates" | tr -dc '0-9-\n' | sort | tail -n 1 || true)
    datesource="its newest advisory, SNAPSHOT.md giving none"
fi
[ -n "$snapdate" ] || { say "cannot tell the date of the snapshot at $snapshot" >&2; exit 1; }
age=$((($(date -u +%s) - $(date -u -d "$snapdate" +%s)) / 86400))

# cargo-deny wants a git checkout under its db-path, named after the database's URL: build one
# from the snapshot (dated to the snapshot, not to today), and let cargo-deny clone it into a
# temporary db-path (git's url.<local>.insteadOf the RustSec URL; no network involved).
repo=$tmp/snapshot/advisory-db
mkdir -p "$tmp/snapshot"
cp -r "$snapshot" "$repo"
chmod -R u+w "$repo"
rm -rf "$repo/.git"
git -C "$repo" init -q -b main
git -C "$repo" add -A
GIT_AUTHOR_DATE="${snapdate}T00:00:00Z" GIT_COMMITTER_DATE="${snapdate}T00:00:00Z" \
    git -C "$repo" -c user.name=supply_chain.sh -c user.email=ci@localhost -c commit.gpgsign=false \
    commit -qm "RustSec advisory database snapshot ${commit:-} ($snapdate)"

dbs=$tmp/advisory-dbs
sed "s|^db-path = .*|db-path = \"$dbs\"|" deny.toml >"$tmp/deny.toml"
grep -qxF "db-path = \"$dbs\"" "$tmp/deny.toml" || { say "deny.toml has no db-path line to redirect" >&2; exit 1; }
GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="url.file://$repo.insteadOf" \
    GIT_CONFIG_VALUE_0="https://github.com/RustSec/advisory-db" \
    cargo deny --locked --config "$tmp/deny.toml" fetch db >"$tmp/clone.log" 2>&1 ||
    { say "could not load the snapshot into cargo-deny:" >&2; cat "$tmp/clone.log" >&2; exit 1; }
cloned=("$dbs"/advisory-db-*)
if [ "${#cloned[@]}" -ne 1 ] || [ ! -d "${cloned[0]}/.git" ]; then
    say "cargo-deny did not clone the snapshot where expected (${cloned[*]})" >&2
    exit 1
fi
# A fresh clone looks fetched today; make cargo-deny see the snapshot's real age.
touch -d "${snapdate}T00:00:00Z" "${cloned[0]}/.git/HEAD"

say "advisories: offline RustSec snapshot $snapshot, commit ${commit:-unknown}, dated $snapdate" \
    "(date from $datesource), $age days old: advisories published after $snapdate are not checked"
if ! cargo deny --locked --offline --config "$tmp/deny.toml" check advisories; then
    say "advisories FAILED against the RustSec snapshot of $snapdate (an advisory deny.toml does" \
        "not accept, or a snapshot older than its maximum-db-staleness)" >&2
    exit 1
fi
say "advisories ok as of $snapdate (offline RustSec snapshot, $age days old; deny.toml's" \
    "maximum-db-staleness: $(sed -n 's/^maximum-db-staleness = "\(.*\)".*/\1/p' deny.toml))"
