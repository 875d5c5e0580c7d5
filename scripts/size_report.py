#!/usr/bin/env python3
"""What each crate costs in an unstripped inferd binary (what cargo-bloat --crates reports,
from the symbol table, for any architecture's ELF and without rebuilding).

    scripts/size_report.py BINARY [TOP]

BINARY must keep its symbols: build with CARGO_PROFILE_RELEASE_STRIP=false (the release
profile strips). A function is charged to the first crate named in its demangled path, looking
through std's generic wrappers (`core::ptr::drop_in_place<tract_core::..>` is tract-core's):
monomorphised generics land on the crate that instantiated them, like cargo-bloat's heuristic.
Uses `<arch>-linux-gnu-nm` when the binary is not for this machine.
"""
import collections
import os
import re
import subprocess
import sys
import tomllib

STD = {"std", "core", "alloc", "hashbrown", "std_detect", "compiler_builtins", "panic_unwind",
       "rustc_demangle", "addr2line", "gimli", "miniz_oxide", "object", "memchr"}


def tool(binary, name):
    with open(binary, "rb") as f:
        machine = int.from_bytes(f.read(20)[18:20], "little")
    prefix = {183: "aarch64-linux-gnu-", 40: "arm-linux-gnueabihf-"}.get(machine, "")
    return prefix + name


def crates_in_lock():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    with open(os.path.join(root, "Cargo.lock"), "rb") as f:
        lock = tomllib.load(f)
    return {p["name"].replace("-", "_") for p in lock["package"]}


def main():
    binary = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    known = crates_in_lock() | STD
    out = subprocess.run([tool(binary, "nm"), "-S", "-C", "--size-sort", binary],
                         capture_output=True, text=True, check=True).stdout
    if not out.strip():
        sys.exit(f"{binary}: no symbols (stripped?); build with CARGO_PROFILE_RELEASE_STRIP=false")
    text = collections.Counter()
    data = collections.Counter()
    word = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)::")
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4:
            continue
        size, kind, name = int(parts[1], 16), parts[2].lower(), parts[3]
        names = [w for w in word.findall(name) if w in known]
        owner = next((w for w in names if w not in STD), names[0] if names else None)
        if owner is None:
            owner = "[C/asm: ring, tract kernels, libc]" if not name.startswith("_") else "[other]"
        (text if kind in "tw" else data)[owner] += size
    sections = subprocess.run([tool(binary, "size"), "-A", binary], capture_output=True,
                              text=True, check=True).stdout
    total = os.path.getsize(binary)
    print(f"{binary}: {total:,} bytes on disk (with symbols)")
    for line in sections.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] in (".text", ".rodata", ".data.rel.ro", ".eh_frame", ".gcc_except_table"):
            print(f"  {f[0]:<18} {int(f[1]):>12,}")
    all_text = sum(text.values())
    print(f"\nfunctions by crate (sum of symbol sizes {all_text:,} bytes):")
    print(f"  {'crate':<40} {'bytes':>12} {'share':>7}")
    for crate, size in text.most_common(top):
        print(f"  {crate:<40} {size:>12,} {100 * size / all_text:>6.1f}%")
    all_data = sum(data.values())
    print(f"\ndata symbols by crate (sum {all_data:,} bytes):")
    for crate, size in data.most_common(10):
        print(f"  {crate:<40} {size:>12,}")


if __name__ == "__main__":
    main()
