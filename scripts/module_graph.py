#!/usr/bin/env python3
"""inferd's module graph, read from the sources: which top-level module uses which.

    scripts/module_graph.py [--files] [SRC]   (default SRC: src)

Prints one line per top-level module with the modules it uses (`crate::x`, `super::x`,
`use crate::{x, y}`; comments and strings skipped); `--files` also prints the graph of the
files under http/ and api/. Exits 1 when the layering breaks:
- http/ (the generic HTTP server) uses any module outside http/, or the crate root;
- any cycle between top-level modules (the crate root, which wires them all, aside).
"""
import argparse
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fn_lengths import blank_out  # noqa: E402

ROOT = "(root)"


def module_of(path, src):
    """`src/http/conn.rs` -> ["http", "conn"]; `src/api/mod.rs` -> ["api"]; lib.rs -> []."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


PATH = re.compile(
    r"\b(crate|super)((?:::super)*)::((?:[A-Za-z_][A-Za-z0-9_]*::)*)(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)"
)


def uses(code, here, modules):
    """Modules (as tuples, the longest that exists) this file's code refers to."""
    found = set()
    for m in PATH.finditer(code):
        kind, supers, middle, last = m.groups()
        if kind == "crate":
            base = []
        else:
            # `super` from a file is its parent module; each further super, one up.
            base = here[: len(here) - 1 - supers.count("super")]
        prefix = base + [p for p in middle.split("::") if p]
        names = last.strip("{}").split(",") if last.startswith("{") else [last]
        for name in names:
            path = prefix + [p.strip() for p in name.split("::") if p.strip() and p.strip() != "self"]
            while path and tuple(path) not in modules:
                path.pop()
            found.add(tuple(path) if path else (ROOT,))
    return found


def top(path):
    return path[0] if path else ROOT


def cycles(graph):
    """Every pair of nodes that reach each other (root aside)."""
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen and nxt != ROOT:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
    reached = {m: reach(m) for m in graph if m != ROOT}
    return sorted({tuple(sorted((a, b))) for a in reached for b in reached[a] if a != b and a in reached.get(b, ())})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="?", default="src")
    ap.add_argument("--files", action="store_true")
    args = ap.parse_args()
    src = pathlib.Path(args.src)
    files = {tuple(module_of(p, src)): p for p in sorted(src.rglob("*.rs"))}
    modules = set(files)
    modules |= {path[:i] for path in files for i in range(1, len(path))}
    edges = {}
    for here, path in files.items():
        for target in uses(blank_out(path.read_text()), list(here), modules):
            edges.setdefault(here, set()).add(target)
    graph = {}
    for here, targets in edges.items():
        for t in targets:
            if top(here) != top(t):
                graph.setdefault(top(here), set()).add(top(t))
    for m in sorted(set(graph) | {top(f) for f in files}):
        print(f"{m:10} -> {', '.join(sorted(graph.get(m, ()))) or '-'}")
    if args.files:
        print()
        for here in sorted(edges):
            if top(here) in ("http", "api"):
                targets = sorted("::".join(t) for t in edges[here] if t != here)
                print(f"{'::'.join(here):22} -> {', '.join(targets)}")
    problems = [
        f"http/{pathlib.Path(*here[1:])}: uses {'::'.join(t)}"
        for here, targets in sorted(edges.items())
        if top(here) == "http"
        for t in sorted(targets)
        if top(t) != "http"
    ]
    problems += [f"cycle: {a} <-> {b}" for a, b in cycles(graph)]
    # Within a top-level module, between its files (a module and its own children aside).
    files_graph = {}
    for here, targets in edges.items():
        for t in targets:
            if t != here and top(t) == top(here) and len(t) > 1 and len(here) > 1:
                if t[: len(here)] != here and here[: len(t)] != t:
                    files_graph.setdefault("::".join(here), set()).add("::".join(t))
    problems += [f"cycle: {a} <-> {b}" for a, b in cycles(files_graph)]
    for p in problems:
        print(f"layering: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
