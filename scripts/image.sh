#!/usr/bin/env bash
# The inferd container image, without a container engine: an OCI image layout assembled with
# umoci from static binaries, a multi-arch index over it, and a test of the result with
# skopeo and umoci. Used by scripts/release.sh (amd64 + arm64) and .ci/run (arm64).
#
#   scripts/image.sh build LAYOUT VERSION ARCH=STATIC_BINARY...   (ARCH: amd64 or arm64)
#   scripts/image.sh test LAYOUT VERSION
#
# build: LAYOUT (replaced) holds one image per ARCH, tagged VERSION-ARCH, and the image index
#   VERSION naming them all with their platforms. Each image is one layer:
#     /usr/local/bin/inferd                   the static binary (no libc, loader or shell)
#     /usr/local/share/inferd/models/         the bundled models (models/)
#     /usr/local/share/doc/inferd/            LICENSE, THIRD-PARTY-LICENSES (if given by
#                                             INFERD_IMAGE_LICENSES), CHANGELOG.md
#     /etc/passwd, /etc/group                 user and group inferd, uid/gid 10001
#     /var/lib/inferd/                        the state volume, 0700, owned by inferd
#     /tmp (1777), /proc /sys /dev (empty: the runtime mounts them)
#   and the config: user 10001:10001; entrypoint /usr/local/bin/inferd; command `serve
#   --config /var/lib/inferd/inferd.toml --first-boot --first-boot-models
#   /usr/local/share/inferd/models` (provisions an empty volume, then serves on 0.0.0.0:8443);
#   volume /var/lib/inferd; port 8443/tcp; stop signal SIGTERM (inferd drains, exits 0);
#   MALLOC_MMAP_THRESHOLD_ as in the systemd unit; OCI labels (version, revision, licences).
#   File times are SOURCE_DATE_EPOCH (default: the commit's time).
# test: for every platform in the index: `skopeo inspect` of the platform's image;
#   `umoci unpack` (checks every blob's digest); the state folder's owner and mode; then, in a
#   new PID namespace with the unpacked tree as root (chroot) and the image's user, the image's
#   own entrypoint and command with INFERD_LISTEN=127.0.0.1:0 as the only override: first
#   boot on the empty volume, /healthz and /readyz, the admin key file (0600) opening an
#   authenticated route, SIGTERM to the namespace's PID 1 and exit 0; then `inferd check` on
#   the state it made. arm64 runs under qemu-aarch64-static (copied into the throwaway tree;
#   no -L: the binary must need nothing from the host). Needs root (chown, chroot, unshare).
#
# Tools: umoci, skopeo (Debian), python3, curl, qemu-user-static for arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "image.sh: $*"; }
die() { echo "image.sh: $*" >&2; exit 1; }

UID_GID=10001
STATE=/var/lib/inferd
MODELS=/usr/local/share/inferd/models
BIN=/usr/local/bin/inferd

[ "$(id -u)" -eq 0 ] || die "needs root (image files owned by uid $UID_GID; chroot and unshare in test)"
for tool in umoci skopeo python3 curl; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install umoci skopeo python3 curl)"
done

# Writes the root filesystem of one platform into $1 from static binary $2.
stage_rootfs() {
    local root=$1 bin=$2
    mkdir -p "$root"/{usr/local/bin,usr/local/share/inferd,usr/local/share/doc/inferd,etc,var/lib,tmp,proc,sys,dev}
    install -m 0755 "$bin" "$root$BIN"
    cp -R models "$root$MODELS"
    chmod -R u=rwX,go=rX "$root$MODELS"
    install -m 0644 LICENSE CHANGELOG.md "$root/usr/local/share/doc/inferd/"
    if [ -n "${INFERD_IMAGE_LICENSES:-}" ]; then
        install -m 0644 "$INFERD_IMAGE_LICENSES" "$root/usr/local/share/doc/inferd/THIRD-PARTY-LICENSES"
    fi
    printf 'root:x:0:0:root:/root:/sbin/nologin\ninferd:x:%s:%s:inferd ML inference appliance:%s:/sbin/nologin\n' \
        "$UID_GID" "$UID_GID" "$STATE" >"$root/etc/passwd"
    printf 'root:x:0:\ninferd:x:%s:\n' "$UID_GID" >"$root/etc/group"
    chmod 0644 "$root/etc/passwd" "$root/etc/group"
    install -d -m 0700 -o "$UID_GID" -g "$UID_GID" "$root$STATE"
    chmod 1777 "$root/tmp"
    find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

build() {
    local layout=$1 version=$2; shift 2
    [ $# -gt 0 ] || die "build: no ARCH=BINARY given"
    : "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct)}"
    local created revision tmp arch bin
    created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
    revision=$(git rev-parse HEAD)
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand now: $tmp is local
    trap "rm -rf '$tmp'" EXIT
    rm -rf "$layout"
    umoci init --layout "$layout"
    local archs=()
    for spec in "$@"; do
        arch=${spec%%=*} bin=${spec#*=}
        case "$arch" in amd64 | arm64) ;; *) die "unknown architecture $arch (amd64, arm64)" ;; esac
        [ -x "$bin" ] || die "not an executable: $bin"
        if file -L "$bin" | grep -q 'dynamically linked'; then
            die "$bin is dynamically linked; the image has no libc: give a static build"
        fi
        archs+=("$arch")
        stage_rootfs "$tmp/$arch" "$bin"
        local image="$layout:$version-$arch"
        umoci new --image "$image"
        umoci insert --image "$image" --history.created "$created" \
            --history.created_by "scripts/image.sh (inferd $version)" "$tmp/$arch" /
        umoci config --image "$image" --no-history --created "$created" \
            --os linux --architecture "$arch" --author "inferd" \
            --config.user "$UID_GID:$UID_GID" --config.workingdir "$STATE" \
            --config.entrypoint "$BIN" \
            --config.cmd serve --config.cmd=--config --config.cmd "$STATE/inferd.toml" \
            --config.cmd=--first-boot --config.cmd=--first-boot-models --config.cmd "$MODELS" \
            --config.volume "$STATE" --config.exposedports 8443/tcp \
            --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env MALLOC_MMAP_THRESHOLD_=131072 --config.stopsignal SIGTERM \
            --config.label "org.opencontainers.image.title=inferd" \
            --config.label "org.opencontainers.image.version=$version" \
            --config.label "org.opencontainers.image.revision=$revision" \
            --config.label "org.opencontainers.image.licenses=Apache-2.0" \
            --config.label "org.opencontainers.image.created=$created"
        say "$version-$arch: $(du -sb "$tmp/$arch" | cut -f1) bytes unpacked"
    done
    umoci gc --layout "$layout"
    # umoci tags single-platform images; the multi-arch index over them is one more blob.
    python3 - "$layout" "$version" "${archs[@]}" <<'EOF'
import hashlib, json, os, sys
layout, version, archs = sys.argv[1], sys.argv[2], sys.argv[3:]
index_path = os.path.join(layout, "index.json")
top = json.load(open(index_path))
by_ref = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in top["manifests"]}
manifests = []
for arch in archs:
    d = dict(by_ref[f"{version}-{arch}"])
    d.pop("annotations", None)
    d["platform"] = {"architecture": arch, "os": "linux"}
    manifests.append(d)
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": manifests}
blob = json.dumps(index, indent=2, sort_keys=True).encode()
digest = hashlib.sha256(blob).hexdigest()
with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
    f.write(blob)
top["manifests"] = [m for m in top["manifests"]
                    if m["annotations"]["org.opencontainers.image.ref.name"] != version]
top["manifests"].append({"mediaType": index["mediaType"], "digest": f"sha256:{digest}",
                         "size": len(blob),
                         "annotations": {"org.opencontainers.image.ref.name": version}})
tmp = index_path + ".tmp"
with open(tmp, "w") as f:
    json.dump(top, f, indent=2, sort_keys=True)
os.replace(tmp, index_path)
EOF
    for arch in "${archs[@]}"; do
        say "$version-$arch: $(layer_bytes "$layout" "$version" "$arch") bytes compressed (layers)"
    done
}

# Compressed size of the platform's layers, from its manifest as skopeo reads it.
layer_bytes() {
    skopeo inspect --raw --override-arch "$3" "oci:$1:$2-$3" \
        | python3 -c 'import json, sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))'
}

test_image() {
    local layout=$1 version=$2 tmp platforms arch
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand now: $tmp is local
    trap "rm -rf '$tmp'" EXIT
    platforms=$(skopeo inspect --raw "oci:$layout:$version" | python3 -c '
import json, sys
index = json.load(sys.stdin)
assert index["mediaType"] == "application/vnd.oci.image.index.v1+json", index.get("mediaType")
print(" ".join(m["platform"]["architecture"] for m in index["manifests"]))')
    [ -n "$platforms" ] || die "$layout:$version: an index with no platform"
    say "$layout:$version: an image index for linux/{${platforms// /,}}"
    for arch in $platforms; do
        skopeo inspect --override-arch "$arch" "oci:$layout:$version" >"$tmp/inspect.json"
        python3 - "$tmp/inspect.json" "$arch" "$version" <<'EOF'
import json, sys
i = json.load(open(sys.argv[1]))
assert i["Architecture"] == sys.argv[2] and i["Os"] == "linux", (i["Architecture"], i["Os"])
assert i["Labels"]["org.opencontainers.image.version"] == sys.argv[3], i["Labels"]
EOF
        say "skopeo inspect linux/$arch: ok ($(layer_bytes "$layout" "$version" "$arch") bytes of layers)"
        rm -rf "$tmp/bundle"
        umoci unpack --image "$layout:$version-$arch" "$tmp/bundle" >/dev/null
        say "umoci unpack linux/$arch: ok ($(du -sb "$tmp/bundle/rootfs" | cut -f1) bytes unpacked)"
        run_unpacked "$tmp/bundle" "$arch"
    done
}

# The image's own entrypoint and command, as its user, in a new PID namespace (inferd is
# PID 1, as under a container runtime) with the unpacked tree as root.
run_unpacked() {
    local bundle=$1 arch=$2 rootfs=$1/rootfs runner=() uid gid args env log pid addr key rc
    [ "$(stat -c '%u:%g %a' "$rootfs$STATE")" = "$UID_GID:$UID_GID 700" ] \
        || die "$STATE in the image: $(stat -c '%u:%g %a' "$rootfs$STATE"), want $UID_GID:$UID_GID 700"
    if [ "$arch" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
        cp "$(command -v qemu-aarch64-static)" "$rootfs/qemu-aarch64-static"
        runner=(/qemu-aarch64-static)
    fi
    # umoci's runtime config: process.user, .args (entrypoint + command) and .env.
    read -r uid gid < <(python3 -c 'import json, sys
u = json.load(open(sys.argv[1]))["process"]["user"]; print(u["uid"], u["gid"])' "$bundle/config.json")
    mapfile -t args < <(python3 -c 'import json, sys
print("\n".join(json.load(open(sys.argv[1]))["process"]["args"]))' "$bundle/config.json")
    mapfile -t env < <(python3 -c 'import json, sys
print("\n".join(json.load(open(sys.argv[1]))["process"]["env"]))' "$bundle/config.json")
    [ "$uid" = "$UID_GID" ] || die "the image runs as uid $uid, want $UID_GID"
    # As a runtime does: a new PID and mount namespace, /proc, and the device nodes of the OCI
    # runtime spec's defaults bound in (the static binary reads /dev/urandom: glibc's static
    # dlsym cannot find getrandom(), so the getrandom crate falls back to the file), then the
    # image's environment only and its user.
    local devs=(null zero full random urandom tty) d
    for d in "${devs[@]}"; do : >"$rootfs/dev/$d"; done
    # Call it in a subshell only (`&` or `$(...)`): it execs, so that $! is unshare's pid.
    in_image() { # VAR=VALUE... -- COMMAND...
        local vars=()
        while [ "$1" != -- ]; do vars+=("$1"); shift; done
        shift
        # shellcheck disable=SC2016  # the inner script's $1 and $@ are its own
        exec env -i "${env[@]}" "${vars[@]}" "$(command -v unshare)" --pid --fork --kill-child \
            --mount-proc="$rootfs/proc" /bin/sh -c \
            'root=$1; shift; for d in null zero full random urandom tty; do mount --bind "/dev/$d" "$root/dev/$d"; done; exec "$@"' \
            sh "$rootfs" "$(command -v chroot)" --userspec="$uid:$gid" "$rootfs" "${runner[@]}" "$@"
    }
    log=$bundle/serve.log
    in_image INFERD_LISTEN=127.0.0.1:0 RUST_LOG=info -- "${args[@]}" >"$log" 2>&1 &
    pid=$!
    local deadline=$((SECONDS + 300))
    until grep -Eq 'ready in [0-9]+ ms' "$log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "linux/$arch: the entrypoint exited before it was ready"; }
        [ "$SECONDS" -lt "$deadline" ] || { cat "$log" >&2; kill -KILL "$pid"; die "linux/$arch: not ready after 300 s"; }
        sleep 0.1
    done
    addr=$(grep -Eom1 'listening on https://[^ ]+' "$log") addr=${addr#listening on https://}
    local ca=$rootfs$STATE/tls/ca.pem keyfile=$rootfs$STATE/initial-admin-key
    [ "$(stat -c '%u %a' "$keyfile")" = "$UID_GID 600" ] || die "linux/$arch: $keyfile is $(stat -c '%u %a' "$keyfile")"
    key=$(cat "$keyfile")
    ! grep -qF "$key" "$log" || die "linux/$arch: the admin key is in the log"
    for path in /healthz /readyz; do
        curl -fsS --noproxy '*' --cacert "$ca" "https://$addr$path" >/dev/null \
            || die "linux/$arch: GET $path failed"
    done
    curl -fsS --noproxy '*' --cacert "$ca" -H "X-API-Key: $key" "https://$addr/v2/models/digits" >/dev/null \
        || die "linux/$arch: the admin key from $keyfile does not open /v2/models/digits"
    # PID 1 of the namespace: a signal from outside reaches it only through a handler.
    local init
    init=$(cat "/proc/$pid/task/$pid/children")
    init=${init%% *}
    kill -TERM "$init"
    wait "$pid" && rc=0 || rc=$?
    [ "$rc" -eq 0 ] || { cat "$log" >&2; die "linux/$arch: exit $rc after SIGTERM as PID 1 (want 0)"; }
    grep -q draining "$log" || die "linux/$arch: no drain on SIGTERM"
    say "linux/$arch: first boot on the empty volume as uid $uid, /healthz /readyz and the admin key ok, SIGTERM as PID 1: drained, exit 0"
    local checked
    checked=$(in_image -- "$BIN" check --config "$STATE/inferd.toml") \
        || die "linux/$arch: inferd check failed in the unpacked image"
    while IFS= read -r line; do say "linux/$arch inferd check: $line"; done <<<"$checked"
}

case "${1:-}" in
    build) shift; [ $# -ge 3 ] || die "usage: scripts/image.sh build LAYOUT VERSION ARCH=BINARY..."; build "$@" ;;
    test) shift; [ $# -eq 2 ] || die "usage: scripts/image.sh test LAYOUT VERSION"; test_image "$@" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
