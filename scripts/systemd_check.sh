#!/usr/bin/env bash
# Checks systemd/inferd.service with Debian's systemd tools, without systemd running:
#   1. `systemd-analyze verify` prints nothing at all (it exits 0 on warnings such as an
#      unknown key, so any output counts as a failure);
#   2. `systemd-analyze security --offline=true` rates the unit's exposure 2.0 or better
#      (0 = fully sandboxed, 10 = none); the score is printed, the full table on failure.
#
# usage: scripts/systemd_check.sh [UNIT]      (default: systemd/inferd.service)
# Installs the `systemd` package with apt-get when systemd-analyze is missing (CI: a fresh
# Debian container, as root). Both commands run against a throw-away root (--root) holding
# the unit, the distribution's unit files (verify wants sysinit.target and friends) and
# stand-ins for the programs the unit executes, since verify refuses a unit whose
# ExecStart= binary does not exist and the host has no inferd installed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
unit="$(realpath "${1:-$here/../systemd/inferd.service}")"
name="$(basename "$unit")"
max_exposure="2.0"
die() { echo "systemd_check.sh: FAIL: $*" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null; then
    echo "systemd_check.sh: installing Debian's systemd package (for systemd-analyze)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
systemd-analyze --version | head -n 1

units_dir=/usr/lib/systemd/system
[ -d "$units_dir" ] || units_dir=/lib/systemd/system
[ -f "$units_dir/sysinit.target" ] || die "no distribution unit files under $units_dir"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/usr/bin"
cp -a "$units_dir" "$root/usr/lib/systemd/"
cp "$unit" "$root/etc/systemd/system/$name"
ln -s usr/bin "$root/bin"
ln -s usr/bin "$root/sbin"
# Every absolute program the unit runs (ExecStart=, ExecReload=, ...), as an executable
# stand-in: verify only checks that each exists and is executable.
sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' "$unit" | sort -u | while read -r program; do
    target="$root$program"  # /bin/... lands in usr/bin through the symlink
    mkdir -p "$(dirname "$target")"
    printf '#!/bin/sh\nexit 0\n' > "$target"
    chmod 0755 "$target"
done

echo "== systemd-analyze verify $name"
verify_out="$(systemd-analyze verify --root="$root" "$name" 2>&1)" && verify_rc=0 || verify_rc=$?
if [ "$verify_rc" -ne 0 ] || [ -n "$verify_out" ]; then
    printf '%s\n' "$verify_out"
    die "systemd-analyze verify: exit $verify_rc, output above (any output is a failure)"
fi
echo "clean (no output)"

echo "== systemd-analyze security --offline=true $name"
table="$(systemd-analyze security --offline=true --root="$root" "$name" 2>&1)" || {
    printf '%s\n' "$table"
    die "systemd-analyze security failed"
}
score="$(printf '%s\n' "$table" | sed -n "s/.*Overall exposure level for $name: \([0-9.]*\).*/\1/p")"
[ -n "$score" ] || { printf '%s\n' "$table"; die "no overall exposure level in the output above"; }
echo "overall exposure level: $score (want <= $max_exposure)"
if awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s > m) }'; then
    printf '%s\n' "$table"
    die "exposure $score is above $max_exposure"
fi
# What keeps the score above 0, for the record.
printf '%s\n' "$table" | grep '✗' || true
echo "systemd_check.sh: ok"
