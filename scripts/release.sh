#!/usr/bin/env bash
# A release of inferd, from a clean checkout, into dist/ (replaced):
#
#   inferd-VERSION-x86_64-linux-gnu        glibc 2.34+ (dynamic)
#   inferd-VERSION-x86_64-linux-static     any x86_64 Linux (+crt-static; the amd64 image's)
#   inferd-VERSION-aarch64-linux-gnu       glibc 2.34+ (dynamic)
#   inferd-VERSION-aarch64-linux-static    any aarch64 Linux (+crt-static; the arm64 image's)
#   inferd-VERSION-install.tar.gz          what scripts/install.sh needs beside a binary:
#                                          inferd-VERSION/{scripts/install.sh, systemd/,
#                                          models/, LICENSE, THIRD-PARTY-LICENSES, CHANGELOG.md}
#   inferd-VERSION-image.oci.tar           OCI archive: a multi-arch image (linux/amd64 +
#                                          linux/arm64) tagged VERSION (scripts/image.sh)
#   inferd-VERSION-x86_64.cdx.json,        CycloneDX 1.5 SBOMs (cargo-cyclonedx): the crates in
#   inferd-VERSION-aarch64.cdx.json        each binary, with versions, licences and hashes
#   THIRD-PARTY-LICENSES                   licence texts of every crate compiled in
#                                          (cargo-about, checked complete: scripts/licenses.sh)
#   LICENSE                                inferd's own (Apache-2.0)
#   SHA256SUMS, SHA256SUMS.sig             checksums of all the above, and their Ed25519
#                                          signature (raw 64 bytes) made by `inferd sign`
#   release-key.pem                        the public half of the signing key (SPKI PEM):
#                                          users should take it from the README, not from here
#
#   scripts/release.sh --key KEY.key.pem [--allow-dirty]
#
# KEY.key.pem: an Ed25519 private key (PKCS#8 PEM) as `inferd keygen --out DIR` makes it.
# Each binary is built with --locked, stripped (the release profile), checked (`file`:
# stripped; gnu: no glibc symbol newer than 2.34; static: no program interpreter) and run:
# `--version` must name this commit, and `inferd check` (load and one inference per bundled
# model) runs natively or under qemu-aarch64-static (without -L for the static one). The
# signature is checked with `inferd verify` and with `openssl pkeyutl` before the script ends.
# The image is tested by scripts/image.sh (skopeo inspect, umoci unpack, the image's
# entrypoint as PID 1 on an empty volume, SIGTERM, `inferd check`).
#
# Cost, measured on 2 cores shared with other builds (see the summary it prints; CHANGELOG):
# four release builds of tract at opt-level 3 with fat LTO dominate, ~13-17 min each cold,
# ~4 min each when only inferd changed (LTO relinks everything); qemu checks ~2 min; licences,
# SBOMs, image and signature under a minute once cargo-about and cargo-cyclonedx are installed
# (their first install: ~5 min each). Target directories live outside the checkout, one per
# artefact (different RUSTFLAGS would rebuild everything in a shared one), under
# $INFERD_RELEASE_TARGET (default /var/tmp/inferd-ci-target, .ci/run's own default):
# x86_64-gnu, x86_64-static, aarch64 and aarch64-static, the last the one .ci/run's aarch64
# step builds, so that a release after a CI run finds it warm. SOURCE_COMMIT (for --version)
# comes from the checkout; SOURCE_DATE_EPOCH (the commit's time) dates the image's and the
# bundle's files but is kept from cargo (it would rebuild ring and tract each commit).
#
# Needs root (the image's files are owned by its uid; its test uses chroot and unshare), the
# Debian packages of .ci/run's aarch64 step (rustc-web, gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, libstd-rust-web-dev:arm64, qemu-user-static), umoci, skopeo, openssl
# and file; installs the missing ones and the two cargo tools.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "release.sh: $*"; }
die() { echo "release.sh: $*" >&2; exit 1; }

key="" allow_dirty=false
while [ $# -gt 0 ]; do
    case "$1" in
        --key) [ $# -ge 2 ] || die "--key needs a file"; key=$(realpath "$2"); shift 2 ;;
        --allow-dirty) allow_dirty=true; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ -n "$key" ] || die "--key KEY.key.pem is required (an Ed25519 key from inferd keygen)"
[ -r "$key" ] || die "cannot read $key"
[ "$(id -u)" -eq 0 ] || die "run as root (see --help)"

CYCLONEDX_VERSION=0.5.9
GLIBC_MAX=GLIBC_2.34
base=${INFERD_RELEASE_TARGET:-/var/tmp/inferd-ci-target}
started=$SECONDS
timings=()
step() { # NAME COMMAND...: runs it, records its time
    local name=$1 t0=$SECONDS
    shift
    echo
    say "== $name ($(date -u +%H:%M:%S))"
    "$@"
    timings+=("$(printf '%6d s  %s' $((SECONDS - t0)) "$name")")
}

preflight() {
    local need=() pkg
    for pkg in rustc-web gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static \
        libstd-rust-web-dev:arm64 binutils-aarch64-linux-gnu umoci skopeo openssl file curl; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        dpkg --add-architecture arm64
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    fi
    if [ "$(cargo cyclonedx --version 2>/dev/null | awk '{print $2}')" != "$CYCLONEDX_VERSION" ]; then
        cargo install --locked --version "$CYCLONEDX_VERSION" cargo-cyclonedx
    fi
    if [ -n "$(git status --porcelain)" ]; then
        $allow_dirty || die "the checkout has changes (git status); commit them, or --allow-dirty for a trial"
        commit="$(git rev-parse --short=12 HEAD)-dirty"
    else
        commit=$(git rev-parse --short=12 HEAD)
    fi
    version=$(cargo metadata --locked --no-deps --format-version 1 \
        | python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "inferd"))')
    export SOURCE_COMMIT=$commit
    # Not exported to cargo: the cc crate re-runs the build scripts of ring and tract-linalg
    # when SOURCE_DATE_EPOCH changes, and with them everything above (a cold build per commit).
    # The image's and the bundle's file times use it.
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
    rm -rf dist
    mkdir -p dist
    logs=$(mktemp -d)
    say "inferd $version (commit $commit), target directories under $base"
}

# The four builds run at once, each niced, with its own log: with codegen-units = 1 and fat
# LTO, long stretches of one build keep a single core busy (tract-core, the final link), so
# two or more side by side finish sooner than one after the other. INFERD_RELEASE_JOBS=1
# builds one at a time.
ARTEFACTS=( # name triple target-subdir kind
    "x86_64-linux-gnu x86_64-unknown-linux-gnu x86_64-gnu dynamic"
    "x86_64-linux-static x86_64-unknown-linux-gnu x86_64-static static"
    "aarch64-linux-gnu aarch64-unknown-linux-gnu aarch64 dynamic"
    "aarch64-linux-static aarch64-unknown-linux-gnu aarch64-static static"
)

compile() { # NAME TRIPLE SUBDIR KIND: one release binary into dist/inferd-VERSION-NAME
    local name=$1 triple=$2 dir=$base/$3 kind=$4 flags="" t0=$SECONDS
    [ "$kind" = static ] && flags="-C target-feature=+crt-static"
    local env=(CARGO_TARGET_DIR="$dir" RUSTFLAGS="$flags")
    if [ "$triple" = aarch64-unknown-linux-gnu ]; then
        # Debian's rustc carries the aarch64 standard library; a rustup toolchain does not.
        env+=(RUSTC=/usr/bin/rustc CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc)
    fi
    env "${env[@]}" nice -n 19 cargo build --locked --release --target "$triple"
    cp "$dir/$triple/release/inferd" "dist/inferd-$version-$name.tmp"
    mv "dist/inferd-$version-$name.tmp" "dist/inferd-$version-$name"
    echo "$((SECONDS - t0))" >"$logs/$name.seconds"
}

build_all() {
    local jobs=${INFERD_RELEASE_JOBS:-4} pids=() names=() a name failed=()
    for a in "${ARTEFACTS[@]}"; do
        read -r name _ <<<"$a"
        # shellcheck disable=SC2086  # $a: the four words of one artefact
        compile $a >"$logs/$name.log" 2>&1 &
        pids+=($!) names+=("$name")
        say "building $name (log: $logs/$name.log)"
        if [ "${#pids[@]}" -ge "$jobs" ]; then
            wait "${pids[0]}" || failed+=("${names[0]}")
            pids=("${pids[@]:1}") names=("${names[@]:1}")
        fi
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || failed+=("${names[$i]}")
    done
    for name in "${failed[@]}"; do
        tail -n 30 "$logs/$name.log" >&2
    done
    [ "${#failed[@]}" -eq 0 ] || die "build failed: ${failed[*]}"
    for a in "${ARTEFACTS[@]}"; do
        read -r name _ <<<"$a"
        say "$name: cargo build took $(cat "$logs/$name.seconds") s"
    done
}

inspect_all() {
    local a name triple kind
    for a in "${ARTEFACTS[@]}"; do
        read -r name triple _ kind <<<"$a"
        inspect "dist/inferd-$version-$name" "$triple" "$kind"
    done
}

inspect() { # BINARY TRIPLE KIND: stripped, linkage, runs, checks the bundled models
    local bin=$1 triple=$2 kind=$3 runner=() objdump=objdump readelf=readelf tmp glibc
    if [ "$triple" = aarch64-unknown-linux-gnu ]; then
        objdump=aarch64-linux-gnu-objdump readelf=aarch64-linux-gnu-readelf
        runner=(qemu-aarch64-static)
        [ "$kind" = static ] || runner+=(-L /)
    fi
    file "$bin" | grep -q ', stripped' || die "$bin is not stripped"
    if [ "$kind" = static ]; then
        ! "$readelf" -l "$bin" | grep -q INTERP || die "$bin has a program interpreter: not static"
    else
        glibc=$("$objdump" -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
        [ "$(printf '%s\n' "$glibc" "$GLIBC_MAX" | sort -V | tail -1)" = "$GLIBC_MAX" ] \
            || die "$bin needs $glibc, newer than $GLIBC_MAX"
    fi
    local v
    v=$("${runner[@]}" "$bin" --version)
    [ "$v" = "inferd $version (commit $commit)" ] || die "$bin --version says '$v'"
    tmp=$(mktemp -d)
    "${runner[@]}" "$bin" init "$tmp/state" --models models >/dev/null
    "${runner[@]}" "$bin" check --config "$tmp/state/inferd.toml" >"$tmp/check.out" \
        || { cat "$tmp/check.out" >&2; die "$bin: inferd check failed"; }
    rm -rf "$tmp"
    say "$bin: $(stat -c %s "$bin") bytes, stripped, ${glibc:-static}; '$v'; inferd check ok${runner[*]:+ (${runner[*]})}"
}

licenses() {
    scripts/licenses.sh dist/THIRD-PARTY-LICENSES
    cp LICENSE dist/LICENSE
}

sbom() {
    local triple short
    for triple in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
        short=${triple%%-*}
        cargo cyclonedx --format json --spec-version 1.5 --all --no-build-deps \
            --target "$triple" --override-filename "inferd-$version-$short.cdx"
        mv "inferd-$version-$short.cdx.json" dist/
        python3 - "dist/inferd-$version-$short.cdx.json" <<'EOF'
import json, sys
bom = json.load(open(sys.argv[1]))
assert bom["bomFormat"] == "CycloneDX" and len(bom["components"]) > 50, len(bom.get("components", []))
print(f"release.sh: {sys.argv[1]}: CycloneDX {bom['specVersion']}, {len(bom['components'])} components")
EOF
    done
}

image() {
    local layout
    layout=$(mktemp -d)/oci
    SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH INFERD_IMAGE_LICENSES=dist/THIRD-PARTY-LICENSES scripts/image.sh build "$layout" "$version" \
        "amd64=dist/inferd-$version-x86_64-linux-static" \
        "arm64=dist/inferd-$version-aarch64-linux-static"
    scripts/image.sh test "$layout" "$version"
    skopeo copy --quiet --all "oci:$layout:$version" "oci-archive:dist/inferd-$version-image.oci.tar:$version"
    # The archive holds what was tested: the same index digest.
    local a b
    a=$(skopeo inspect --raw "oci:$layout:$version" | sha256sum)
    b=$(skopeo inspect --raw "oci-archive:dist/inferd-$version-image.oci.tar:$version" | sha256sum)
    [ "$a" = "$b" ] || die "the OCI archive's index differs from the tested layout's"
    rm -rf "$(dirname "$layout")"
}

# The install bundle: put a release binary at its top as ./inferd, run scripts/install.sh.
bundle() {
    local top=inferd-$version tmp
    tmp=$(mktemp -d)
    mkdir -p "$tmp/$top/scripts" "$tmp/$top/systemd"
    cp scripts/install.sh "$tmp/$top/scripts/"
    cp systemd/inferd.service systemd/README.md "$tmp/$top/systemd/"
    cp -R models "$tmp/$top/models"
    cp LICENSE CHANGELOG.md dist/THIRD-PARTY-LICENSES "$tmp/$top/"
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        -C "$tmp" -cf - "$top" | gzip -n -9 >"dist/$top-install.tar.gz"
    rm -rf "$tmp"
    say "dist/$top-install.tar.gz: $(stat -c %s "dist/$top-install.tar.gz") bytes"
}

sign() {
    local bin=dist/inferd-$version-x86_64-linux-gnu
    (cd dist && sha256sum -- * >SHA256SUMS)
    openssl pkey -in "$key" -pubout -out dist/release-key.pem
    # `inferd sign` writes the raw 64-byte signature, as `openssl pkeyutl -sign -rawin` does
    # (Ed25519 is deterministic: both give the same bytes). A binary from before `sign` existed
    # signs with openssl instead, and says so.
    local has_sign=true
    "$bin" sign --help >/dev/null 2>&1 || has_sign=false
    if $has_sign; then
        "$bin" sign --key "$key" dist/SHA256SUMS
    else
        say "this inferd has no 'sign' command: signing with openssl pkeyutl"
        openssl pkeyutl -sign -rawin -inkey "$key" -in dist/SHA256SUMS -out dist/SHA256SUMS.sig
    fi
    [ "$(stat -c %s dist/SHA256SUMS.sig)" -eq 64 ] || die "SHA256SUMS.sig is not a raw Ed25519 signature"
    if $has_sign; then
        "$bin" verify --key dist/release-key.pem dist/SHA256SUMS
        say "inferd verify: SHA256SUMS.sig is valid"
    fi
    openssl pkeyutl -verify -pubin -inkey dist/release-key.pem -rawin \
        -in dist/SHA256SUMS -sigfile dist/SHA256SUMS.sig
    (cd dist && sha256sum --quiet -c SHA256SUMS)
}

step "preflight: tools, clean tree, version" preflight
step "four release builds, side by side" build_all
step "each binary: stripped, linkage, --version, inferd check (qemu for aarch64)" inspect_all
step "THIRD-PARTY-LICENSES (cargo-about, checked complete)" licenses
step "SBOM (cargo-cyclonedx)" sbom
step "install bundle (install.sh, unit, models)" bundle
step "OCI image linux/amd64 + linux/arm64 (umoci), tested (skopeo, umoci, PID 1)" image
step "SHA256SUMS, signed with inferd sign, verified (inferd verify, openssl pkeyutl)" sign

echo
say "inferd $version (commit $commit) in dist/, $((SECONDS - started)) s in all:"
printf '%s\n' "${timings[@]}"
(cd dist && ls -l)
