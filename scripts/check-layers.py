#!/usr/bin/env python3
"""Checks that fastpath's modules import each other without a cycle.

ARCHITECTURE.md draws fastpath in layers (ports, tx.rs and the tables below
ctx.rs, the stages above it, then the pipeline and the worker); a module
that imported from a layer above its own would close a cycle. Every
`crate::a::b` or `super::b` path in a module's non-test code, outside
comments, counts as an import of the longest module it names; grouped
imports (`crate::l3::{v4, v6}`) count once per member. Prints each cycle
found and exits non-zero.
"""
import os
import re
import sys


def tree(code, i):
    """Expands the path tree starting at code[i] (`a::b::{c, d::{e}}`) into
    its paths, each a list of segments; returns them and where it ended."""
    segs = []
    while True:
        m = re.compile(r"\s*([A-Za-z_][A-Za-z_0-9]*)").match(code, i)
        if not m:
            break
        segs.append(m.group(1))
        i = m.end()
        m = re.compile(r"\s*::\s*").match(code, i)
        if not m:
            return [segs], i
        i = m.end()
        if code.startswith("{", i):
            out, i = [], i + 1
            while True:
                m = re.compile(r"[\s,]*").match(code, i)
                i = m.end()
                if code.startswith("}", i):
                    return [segs + (t if t != ["self"] else []) for t in out], i + 1
                sub, j = tree(code, i)
                if j == i:
                    return [segs], i
                out += sub
                i = j
    return [segs], i


def imports(mod, code):
    """Every module path a module's code names through `crate::` or
    `super::`, grouped imports (`crate::l3::{v4, v6}`) expanded."""
    parent = mod.rsplit("::", 1)[0] if "::" in mod else ""
    for m in re.finditer(r"\b(crate|super)::", code):
        paths, _ = tree(code, m.end())
        for segs in paths:
            segs = [x for x in segs if x != "self"]
            if m.group(1) == "super":
                base = parent.split("::") if parent else []
                segs = base + segs
            if segs:
                yield "::".join(segs)


root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fastpath", "src")
deps = {}
for d, _, names in os.walk(root):
    for n in names:
        if not n.endswith(".rs"):
            continue
        path = os.path.join(d, n)
        mod = os.path.relpath(path, root)[:-3]
        mod = mod[: -len("/mod")] if mod.endswith("/mod") else mod
        mod = mod.replace("/", "::")
        code = open(path).read().split("#[cfg(test)]")[0]
        # Comments (doc links among them) import nothing.
        code = re.sub(r"//[^\n]*", "", code)
        deps[mod] = set(imports(mod, code))

graph = {}
for mod, paths in deps.items():
    out = set()
    for p in paths:
        parts = p.split("::")
        for k in range(len(parts), 0, -1):
            target = "::".join(parts[:k])
            if target in deps:
                # A module's own parent (its directory's mod.rs) is not an
                # import of anything it does not already reach.
                if target != mod and not mod.startswith(target + "::"):
                    out.add(target)
                break
    graph[mod] = out

# Tarjan's strongly connected components: any with more than one module
# is a cycle.
index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(graph[v]):
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
            cycles.append(sorted(comp))


sys.setrecursionlimit(10000)
for v in sorted(graph):
    if v not in index:
        visit(v)
for c in cycles:
    print("check-layers: fastpath modules import each other in a cycle: " + " ↔ ".join(c), file=sys.stderr)
if cycles:
    sys.exit(1)
print(f"check-layers: {len(graph)} fastpath modules, no import cycle")
