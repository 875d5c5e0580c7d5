#!/usr/bin/env bash
# Checks scripts/install.sh against a throw-away staging root (no systemd needed):
#   1. a first run installs binary, models, unit, env skeleton and a provisioned state folder
#      whose paths agree with the unit (ExecStart binary, --config file, models dir);
#   2. a second run changes nothing: every file's bytes, mode and owner are the same;
#   3. an upgrade (a different binary) replaces only the binary, keeps the old one as
#      inferd.previous, and leaves the state folder (keys, config) byte-for-byte alone.
#
# usage: scripts/install_check.sh PATH/TO/inferd
# Exits 0 when all hold, 1 with the difference otherwise. Runs as root (useradd --prefix
# and chown into the staging root).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
die() { echo "install_check.sh: FAIL: $*" >&2; exit 1; }
ok() { echo "install_check.sh: ok: $*"; }

[ $# -eq 1 ] || die "usage: $0 PATH/TO/inferd"
bin="$(realpath "$1")" || die "no such binary: $1"
[ -x "$bin" ] || die "not an executable: $bin"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"

# Every path under $1 (or the whole root) with type, mode, owner and content hash.
snapshot() {
    local top="$root${1:-}"
    (cd "$top" && find . -printf '%p %y %m %U:%G\n' | sort) > "$work/meta"
    (cd "$top" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) > "$work/sums"
    cat "$work/meta" "$work/sums"
}

"$repo/scripts/install.sh" --root "$root" --name device.test "$bin" > "$work/first.log" 2>&1 \
    || { cat "$work/first.log"; die "first run failed"; }
grep -q "admin API key" "$work/first.log" || { cat "$work/first.log"; die "no admin key printed"; }

unit="$root/etc/systemd/system/inferd.service"
[ -f "$unit" ] || die "no unit installed"
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
read -r unit_bin _serve _flag unit_config <<< "$exec_start"
[ -x "$root$unit_bin" ] || die "the unit runs $unit_bin, which install.sh did not install"
[ -f "$root$unit_config" ] || die "the unit reads $unit_config, which install.sh did not provision"
cmp -s "$bin" "$root$unit_bin" || die "installed binary differs from $bin"
models_dir="$(sed -n 's/^dir = "\(.*\)"$/\1/p' "$root$unit_config")"
[ -f "$root$models_dir/digits/model.toml" ] || die "the config's models dir $models_dir holds no models"
state="$(dirname "$root$unit_config")"
uid="$(awk -F: '$1 == "inferd" { print $3 }' "$root/etc/passwd")"
[ -n "$uid" ] || die "no inferd user in the staging root"
[ "$(stat -c '%a %u' "$state")" = "700 $uid" ] || die "state folder is $(stat -c '%a %u' "$state"), want 700 $uid"
for secret in tls/key.pem token/signing-key.pem api_keys.toml; do
    [ "$(stat -c '%a %u' "$state/$secret")" = "600 $uid" ] || die "$secret is $(stat -c '%a %u' "$state/$secret")"
done
grep -q '^StateDirectory=inferd$' "$unit" && [ "$(dirname "$unit_config")" = /var/lib/inferd ] \
    || die "the config is not inside the unit's StateDirectory"
ok "first run: binary, models, unit, state folder owned by inferd ($uid), paths agree with the unit"

snapshot > "$work/before"
"$repo/scripts/install.sh" --root "$root" --name device.test "$bin" > "$work/second.log" 2>&1 \
    || { cat "$work/second.log"; die "second run failed"; }
snapshot > "$work/after"
diff -u "$work/before" "$work/after" || die "a second run changed the files above"
grep -q "nothing to change" "$work/second.log" || { cat "$work/second.log"; die "second run reported changes"; }
! grep -q "admin API key" "$work/second.log" || die "second run provisioned again"
ok "second run: nothing changed (bytes, modes, owners)"

# An upgrade: a different executable (a wrapper around the same binary, so it still runs).
printf '#!/bin/sh\nexec %q "$@"\n' "$bin" > "$work/inferd-next"
chmod 0755 "$work/inferd-next"
snapshot /var/lib/inferd > "$work/state-before"
"$repo/scripts/install.sh" --root "$root" "$work/inferd-next" > "$work/upgrade.log" 2>&1 \
    || { cat "$work/upgrade.log"; die "upgrade run failed"; }
snapshot /var/lib/inferd > "$work/state-after"
diff -u "$work/state-before" "$work/state-after" || die "an upgrade touched the state folder"
cmp -s "$work/inferd-next" "$root$unit_bin" || die "upgrade did not install the new binary"
cmp -s "$bin" "$root$unit_bin.previous" || die "upgrade did not keep the old binary as inferd.previous"
ok "upgrade: new binary in place, old one kept as inferd.previous, state folder untouched"
