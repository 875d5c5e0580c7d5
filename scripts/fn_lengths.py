#!/usr/bin/env python3
"""Function lengths in Rust sources: lines from each `fn` signature to its closing brace.

    scripts/fn_lengths.py [--tests] [--top N] [--max-p90 L] [DIR ...]   (default DIR: src)

Prints the count, median, p90 and max, and the N longest functions. Functions inside
`#[cfg(test)]` modules are left out unless --tests is given. With --max-p90, exits 1 when the
p90 is above L. A small lexer skips strings (raw ones too), chars and comments, so braces in
them do not count.
"""
import argparse
import pathlib
import re
import statistics
import sys

FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def blank_out(text):
    """The source with comments, strings and char literals replaced by spaces (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif (m := re.compile(r'b?r(#*)"').match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = '"' + m.group(1)
            j = text.find(close, m.end())
            j = n if j < 0 else j + len(close)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i : j + 1]))
            i = j + 1
        elif c == "'" and (m := re.compile(r"'(\\.[^']*|[^\\'])'").match(text, i)):
            out.append(" " * (m.end() - i))
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def test_spans(code):
    """Line ranges of `#[cfg(test)] mod ... { }` blocks."""
    spans = []
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", code):
        end = match_brace(code, m.end() - 1)
        spans.append((m.start(), end))
    return spans


def match_brace(code, open_at):
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


def functions(path, with_tests):
    code = blank_out(path.read_text())
    skip = [] if with_tests else test_spans(code)
    for m in FN.finditer(code):
        if any(a <= m.start() <= b for a, b in skip):
            continue
        # The body starts at the first `{` after the signature, unless a `;` comes first
        # (a declaration in a trait or an extern block).
        brace, semi = code.find("{", m.end()), code.find(";", m.end())
        if brace < 0 or (0 <= semi < brace):
            continue
        end = match_brace(code, brace)
        first = code.count("\n", 0, m.start()) + 1
        last = code.count("\n", 0, end) + 1
        yield last - first + 1, f"{path}:{first}", m.group(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", default=["src"])
    ap.add_argument("--tests", action="store_true", help="count functions in test modules too")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--max-p90", type=float)
    args = ap.parse_args()
    found = [
        f
        for d in args.dirs
        for p in sorted(pathlib.Path(d).rglob("*.rs"))
        for f in functions(p, args.tests)
    ]
    if not found:
        sys.exit("no functions found")
    lengths = sorted(f[0] for f in found)
    p90 = lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))]
    print(
        f"{len(lengths)} functions: median {statistics.median(lengths):g} lines, "
        f"p90 {p90}, max {lengths[-1]}"
    )
    for length, where, name in sorted(found, reverse=True)[: args.top]:
        print(f"{length:5}  {name}  {where}")
    if args.max_p90 is not None and p90 > args.max_p90:
        sys.exit(f"p90 {p90} is above {args.max_p90:g}")


if __name__ == "__main__":
    main()
