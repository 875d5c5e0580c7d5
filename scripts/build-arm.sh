#!/usr/bin/env bash
# Release binaries of inferd for 64-bit ARM boards, with Debian's cross toolchain (no rustup
# target, no Docker), each one then run under qemu-user on the bundled models.
#
#   scripts/build-arm.sh [dynamic|static|all]      (default: all)
#
# dynamic  glibc 2.34+: Raspberry Pi OS bookworm, Debian 12+, Ubuntu 22.04+, JetPack 6
#          -> dist/inferd-aarch64-linux-gnu
# static   -C target-feature=+crt-static, no shared libraries at all, for older boards
#          (glibc 2.31: Raspberry Pi OS bullseye, Ubuntu 20.04, JetPack 5)
#          -> dist/inferd-aarch64-linux-gnu-static
#
# Installs the Debian packages it needs when run as root (else prints the apt command).
# Target directories: target/ (dynamic, the path cargo uses for --target builds) and
# target/static (its RUSTFLAGS differ; a shared directory would rebuild everything each time).
# Override with ARM_TARGET_DIR / ARM_STATIC_TARGET_DIR. A cold build takes ~25 min on 2 cores.
# Checks, per binary: the highest glibc symbol version it needs (dynamic) or that it has no
# interpreter at all (static), `--version`, and `inferd check` (load + warm-up inference of
# both bundled models) under qemu-aarch64-static.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
case "$which" in dynamic|static|all) ;; *) echo "usage: $0 [dynamic|static|all]" >&2; exit 2 ;; esac

triple=aarch64-unknown-linux-gnu
packages=(rustc-web gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static libstd-rust-web-dev:arm64 binutils-aarch64-linux-gnu)
need=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "build-arm.sh: missing ${need[*]}; as root:" >&2
        echo "  dpkg --add-architecture arm64 && apt-get update && apt-get install -y ${need[*]}" >&2
        exit 2
    fi
    dpkg --add-architecture arm64
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# Debian's rustc carries the aarch64 standard library (libstd-rust-web-dev:arm64); a rustup
# toolchain does not, and none can be downloaded here.
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
mkdir -p dist

build() { # variant target-dir rustflags output
    local variant=$1 dir=$2 flags=$3 out=$4
    echo "== $variant: cargo build --release --target $triple (target dir $dir)"
    CARGO_TARGET_DIR="$dir" RUSTFLAGS="$flags" cargo build --locked --release --target "$triple"
    cp "$dir/$triple/release/inferd" "$out.tmp"
    mv "$out.tmp" "$out"
    printf '%s: %d bytes (%.2f MiB), stripped\n' "$out" "$(stat -c %s "$out")" \
        "$(echo "$(stat -c %s "$out") / 1048576" | bc -l)"
}

smoke() { # binary runner...
    local bin=$1; shift
    local tmp
    tmp=$(mktemp -d)
    "$@" "$bin" --version
    "$@" "$bin" init "$tmp/state" --models models >/dev/null
    # `check` loads every model and runs one warm-up inference on each, as `serve` does.
    "$@" "$bin" check --config "$tmp/state/inferd.toml"
    rm -rf "$tmp"
}

if [ "$which" != static ]; then
    out=dist/inferd-aarch64-linux-gnu
    build dynamic "${ARM_TARGET_DIR:-target}" "" "$out"
    glibc=$(aarch64-linux-gnu-objdump -T "$out" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
    echo "$out needs at most $glibc"
    if [ "$(printf '%s\n' "$glibc" GLIBC_2.34 | sort -V | tail -1)" != GLIBC_2.34 ]; then
        echo "build-arm.sh: $out needs $glibc, newer than the documented glibc 2.34" >&2
        exit 1
    fi
    # -L / : the arm64 glibc from libc6:arm64 (pulled in by libstd-rust-web-dev:arm64) lives
    # under /lib/aarch64-linux-gnu. (-L /usr/aarch64-linux-gnu hangs threaded programs.)
    smoke "$out" qemu-aarch64-static -L /
fi

if [ "$which" != dynamic ]; then
    out=dist/inferd-aarch64-linux-gnu-static
    build static "${ARM_STATIC_TARGET_DIR:-target/static}" "-C target-feature=+crt-static" "$out"
    if aarch64-linux-gnu-readelf -l "$out" | grep INTERP >/dev/null; then
        echo "build-arm.sh: $out has a program interpreter: not static" >&2
        exit 1
    fi
    echo "$out: statically linked (no interpreter, no shared libraries)"
    # No -L: a static binary must run without any arm64 library on the host.
    smoke "$out" qemu-aarch64-static
fi
