#!/usr/bin/env python3
"""Fails if the modules (files) of a crate import each other in a cycle.

usage: scripts/import_cycles.py CRATE_SRC_DIR...

A module is a file (`a/b.rs` or `a/b/mod.rs` is `a::b`); it depends on the modules its
`use crate::...`, `use super::...` and `crate::...` paths name. Declaring a child module
(`mod x;`) is not a dependency, and test modules (`tests.rs`, `#[cfg(test)]` onwards)
are left out. Binaries (`src/bin/`) are not modules of the library.
"""
import os
import re
import sys


def modules(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        if os.path.relpath(dirpath, root).split(os.sep)[0] == "bin":
            continue
        for f in names:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            if parts and parts[-1] == "tests":
                continue
            files["::".join(parts)] = path
    return files


def split_top(body):
    """The items of a use tree's braces, split at top-level commas."""
    items, depth, cur = [], 0, ""
    for ch in body:
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0 and ch == ",":
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [i for i in items if i]


def expand(tree):
    """Every path a use tree names: `a::{b, c::{d}}` -> a::b, a::c::d."""
    m = re.match(r"^(.*?)::\{(.*)\}$", tree)
    if not m:
        return [tree.split(" as ")[0]] if not tree.startswith("{") else sum((expand(i) for i in split_top(tree[1:-1])), [])
    return [m.group(1) + "::" + p for item in split_top(m.group(2)) for p in expand(item)]


def deps(name, src, names):
    here = name.split("::") if name else []

    def resolve(path):
        p = path.split("::")
        for i in range(len(p), 0, -1):
            cand = "::".join(p[:i])
            if cand in names:
                return cand
        return None

    out = set()
    for m in re.finditer(r"\buse\s+([^;]+);", src):
        for p in expand(re.sub(r"\s+", "", m.group(1))):
            if p.startswith("crate::"):
                full = p[len("crate::"):]
            elif p.startswith("super::"):
                mod = list(here)
                while p.startswith("super::"):
                    mod, p = mod[:-1], p[len("super::"):]
                full = "::".join(mod + [p])
            elif p.startswith("self::"):
                full = "::".join(here + [p[len("self::"):]])
            elif "::".join(here + [p.split("::")[0]]) in names:
                full = "::".join(here + [p])
            else:
                continue
            out.add(resolve(full))
    for m in re.finditer(r"crate::((?:[a-z_][a-z_0-9]*::)*[a-z_][a-z_0-9]*)", src):
        out.add(resolve(m.group(1)))
    # A module's own children and ancestors are not imports.
    return {d for d in out if d is not None and d != name and not name.startswith(d + "::") and not d.startswith(name + "::")}


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def main():
    bad = False
    for root in sys.argv[1:]:
        files = modules(root)
        graph = {n: deps(n, open(p).read().split("#[cfg(test)]")[0], set(files)) for n, p in files.items()}
        for c in cycles(graph):
            bad = True
            print(f"{root}: these modules import each other in a cycle: {', '.join(c)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
