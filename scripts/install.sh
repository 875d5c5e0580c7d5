#!/usr/bin/env bash
# Installs inferd on a device, or into a staging root: the binary, the bundled models, the
# systemd unit, an `inferd` system user and a provisioned state folder. Idempotent: a second
# run with the same inputs changes nothing, and keys, certificates and config are never
# overwritten. Also the upgrade path: a different binary or models replace the installed
# ones, and the previous ones are kept beside them for rollback.
#
# usage: scripts/install.sh [options] [BINARY]
#   BINARY            the inferd to install (default: target/release/inferd, else ./inferd,
#                     both relative to the folder above this script)
#   --root DIR        install into DIR (a staging root) instead of /; no systemctl, no check
#   --dry-run         print what would change, change nothing
#   --listen ADDR     the listen address written by `inferd init` (default 0.0.0.0:8443)
#   --name NAME       a name the TLS certificate covers (repeatable; default: localhost,
#                     127.0.0.1, ::1, this host's name, NAME.local and its addresses)
#   --models DIR      the models folder to install (default: models/ above this script)
#
# Layout (kept in step with systemd/inferd.service):
#   /usr/local/bin/inferd                    binary (inferd.previous: the one before)
#   /usr/local/share/inferd/models/          models, root-owned, read-only to the service
#   /etc/systemd/system/inferd.service       the unit
#   /etc/inferd/inferd.env                   optional INFERD_* overrides (skeleton, all comments)
#   /var/lib/inferd/                         state: inferd.toml, tls/, token/, api_keys.toml,
#                                            ... owned by inferd, 0700 (the unit's StateDirectory)
#   /usr/local/share/doc/inferd/operations.md
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/.." && pwd)"
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

root=""
dry_run=false
listen="0.0.0.0:8443"
names=()
models_src="$src/models"
bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a folder"; root="$2"; shift 2 ;;
        --dry-run) dry_run=true; shift ;;
        --listen) [ $# -ge 2 ] || die "--listen needs an address"; listen="$2"; shift 2 ;;
        --name) [ $# -ge 2 ] || die "--name needs a value"; names+=("$2"); shift 2 ;;
        --models) [ $# -ge 2 ] || die "--models needs a folder"; models_src="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$bin" ] || die "one binary only"; bin="$1"; shift ;;
    esac
done

if [ -z "$bin" ]; then
    for candidate in "$src/target/release/inferd" "$src/inferd"; do
        if [ -x "$candidate" ]; then bin="$candidate"; break; fi
    done
    [ -n "$bin" ] || die "no binary given and none at $src/target/release/inferd or $src/inferd"
fi
[ -x "$bin" ] || die "not an executable: $bin"
bin="$(realpath "$bin")"
unit_src="$src/systemd/inferd.service"
doc_src="$src/systemd/README.md"
[ -f "$unit_src" ] || die "missing $unit_src"
[ -d "$models_src" ] || die "missing models folder $models_src"
models_src="$(realpath "$models_src")"
if [ -n "$root" ]; then
    mkdir -p "$root"
    root="$(realpath "$root")"
fi
[ "$(id -u)" -eq 0 ] || [ -n "$root" ] || $dry_run || die "run as root (or use --root DIR for a staging root)"
# A binary for another architecture (or a broken one) fails here, before anything changes.
version="$("$bin" --version)" || die "$bin does not run on this machine"

# Installed paths, as the unit and the config see them, and where they are written.
BIN_DIR=/usr/local/bin
MODELS_DIR=/usr/local/share/inferd/models
UNIT=/etc/systemd/system/inferd.service
ENV_FILE=/etc/inferd/inferd.env
STATE_DIR=/var/lib/inferd
DOC=/usr/local/share/doc/inferd/operations.md
USER_NAME=inferd

changed=()
run() {
    if $dry_run; then echo "would run: $*"; else "$@"; fi
}

# Copies $1 to $2 with mode $3 unless $2 already holds the same bytes; the new file appears
# by rename, so a running service never sees half of it. $4 = "keep" keeps the old file
# as $2.previous (rollback).
put_file() {
    local from="$1" to="$root$2" mode="$3" keep="${4:-}"
    if [ -f "$to" ] && cmp -s "$from" "$to"; then
        if [ "$(stat -c %a "$to")" != "${mode#0}" ]; then
            run chmod "$mode" "$to"; changed+=("$2 (mode)")
        fi
        return
    fi
    changed+=("$2")
    if $dry_run; then echo "would install $from -> $to ($mode)"; return; fi
    mkdir -p "$(dirname "$to")"
    install -m "$mode" "$from" "$to.new.$$"
    if [ "$keep" = keep ] && [ -f "$to" ]; then
        ln -f "$to" "$to.previous"
    fi
    mv -f "$to.new.$$" "$to"
}

# Replaces folder $2 with a copy of $1 unless their contents already match; the previous
# folder is kept as $2.previous.
put_tree() {
    local from="$1" to="$root$2"
    if [ -d "$to" ] && diff -r -q "$from" "$to" >/dev/null 2>&1; then
        return
    fi
    changed+=("$2/")
    if $dry_run; then echo "would install $from/ -> $to/"; return; fi
    mkdir -p "$(dirname "$to")"
    rm -rf "$to.new.$$"
    cp -R "$from" "$to.new.$$"
    chmod -R u=rwX,go=rX "$to.new.$$"
    if [ -d "$to" ]; then
        rm -rf "$to.previous"
        mv "$to" "$to.previous"
    fi
    mv "$to.new.$$" "$to"
}

say "installing $version from $bin into ${root:-/}"

# 1. The service user: a system account with no login and no home of its own.
passwd_file="$root/etc/passwd"
uid_of() { awk -F: -v u="$USER_NAME" '$1 == u { print $3 }' "$passwd_file" 2>/dev/null; }
if [ -z "$(uid_of)" ]; then
    changed+=("user $USER_NAME")
    prefix=()
    if [ -n "$root" ]; then
        prefix=(--prefix "$root")
        # useradd --prefix edits the staging root's files; it needs them to exist.
        if ! $dry_run; then
            mkdir -p "$root/etc"
            for f in passwd group shadow gshadow; do [ -e "$root/etc/$f" ] || touch "$root/etc/$f"; done
        fi
    fi
    run useradd "${prefix[@]}" --system --user-group --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "inferd ML inference appliance" "$USER_NAME"
fi

# 2. Binary, models, unit, documentation.
put_file "$bin" "$BIN_DIR/inferd" 0755 keep
put_tree "$models_src" "$MODELS_DIR"
put_file "$unit_src" "$UNIT" 0644
if [ -f "$doc_src" ]; then put_file "$doc_src" "$DOC" 0644; fi

# 3. Optional environment overrides: a skeleton of comments, written once, never replaced.
if [ ! -e "$root$ENV_FILE" ]; then
    changed+=("$ENV_FILE")
    if $dry_run; then
        echo "would write $root$ENV_FILE (comments only)"
    else
        mkdir -p "$root/etc/inferd"
        chmod 0755 "$root/etc/inferd"
        cat > "$root$ENV_FILE.new.$$" <<'EOF'
# INFERD_<SECTION>_<KEY>=value overrides for /var/lib/inferd/inferd.toml, read by systemd
# (EnvironmentFile= in inferd.service) at every start. An unknown INFERD_* name stops inferd
# from starting, so a typo cannot silently do nothing. Examples:
# INFERD_LOG_LEVEL=debug
# INFERD_LIMITS_MAX_CONNECTIONS=64
# INFERD_MODELS_ENABLED=digits,sentiment
EOF
        chmod 0644 "$root$ENV_FILE.new.$$"
        mv "$root$ENV_FILE.new.$$" "$root$ENV_FILE"
    fi
fi

# 4. The state folder: provisioned once by `inferd init`, which prints the admin key once.
state="$root$STATE_DIR"
if [ -e "$state/inferd.toml" ]; then
    say "keeping the existing state folder $STATE_DIR (config, keys and certificates untouched)"
elif [ -d "$state" ] && [ -n "$(ls -A "$state")" ]; then
    die "$state holds files but no inferd.toml; not provisioning over them (move them away first)"
else
    changed+=("$STATE_DIR/ (provisioned)")
    if [ ${#names[@]} -eq 0 ]; then
        names=(localhost 127.0.0.1 ::1)
        host="$(hostname 2>/dev/null || true)"
        if [ -n "$host" ] && [ "$host" != localhost ]; then names+=("$host" "$host.local"); fi
        for addr in $(hostname -I 2>/dev/null || true); do
            case "$addr" in fe80:*) ;; *) names+=("$addr") ;; esac
        done
    fi
    name_args=()
    for n in "${names[@]}"; do name_args+=(--name "$n"); done
    if $dry_run; then
        echo "would run: $bin init $state --listen $listen --models $MODELS_DIR ${name_args[*]}"
    else
        mkdir -p "$(dirname "$state")"
        # umask 077: the folders init creates are the service's alone.
        (umask 077 && "$bin" init "$state" --listen "$listen" --models "$MODELS_DIR" "${name_args[@]}")
        echo
        say "keep the admin API key above: it is stored only as a hash and not shown again"
    fi
fi
if ! $dry_run && [ -d "$state" ]; then
    uid="$(uid_of)"
    gid="$(awk -F: -v u="$USER_NAME" '$1 == u { print $4 }' "$passwd_file")"
    [ -n "$uid" ] && [ -n "$gid" ] || die "no $USER_NAME in $passwd_file"
    # Repairs files an operator created as root (they would be unreadable to the service).
    if [ -n "$(find "$state" \( ! -uid "$uid" -o ! -gid "$gid" \) -print -quit)" ]; then
        chown -R "$uid:$gid" "$state"; changed+=("$STATE_DIR/ (owner)")
    fi
    if [ "$(stat -c %a "$state")" != 700 ]; then
        chmod 0700 "$state"; changed+=("$STATE_DIR/ (mode)")
    fi
fi

# 5. Tell systemd, when it is running this root.
if [ ${#changed[@]} -eq 0 ]; then
    say "nothing to change"
else
    say "changed: ${changed[*]}"
fi
if $dry_run; then exit 0; fi
if [ -n "$root" ] || [ ! -d /run/systemd/system ]; then
    say "systemd is not managing ${root:-this system}; on the device run:"
    echo "  systemctl daemon-reload && systemctl enable --now inferd"
    exit 0
fi
# As the service user, so that unreadable keys show up now and not at the first start.
if command -v runuser >/dev/null; then
    runuser -u "$USER_NAME" -- "$BIN_DIR/inferd" check --config "$STATE_DIR/inferd.toml" \
        || die "inferd check failed; the service would not start"
fi
systemctl daemon-reload
systemctl enable inferd.service
if systemctl is-active --quiet inferd.service; then
    if [ ${#changed[@]} -gt 0 ]; then
        say "inferd is running the old version; apply with: systemctl restart inferd"
    fi
else
    say "start with: systemctl start inferd   (logs: journalctl -u inferd -f)"
fi
