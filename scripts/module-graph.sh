#!/usr/bin/env bash
# Prints the crate's top-level module graph (an edge `a -> b` is a `crate::b`
# path in product code (not comments, not a file's #[cfg(test)] module) of a file under src/a) and any circle.
# The test tests/it/layout.rs checks the same thing in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
import os, re, sys
graph = {}
for root, _, files in os.walk("src"):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(root, f)
        top = os.path.relpath(path, "src").split(os.sep)[0].removesuffix(".rs")
        if top in ("lib", "main"):
            continue
        deps = graph.setdefault(top, set())
        for line in open(path, encoding="utf-8"):
            if line.strip() == "#[cfg(test)]":
                break  # a file's test module may use test support
            code = line.split("//")[0]
            deps.update(m for m in re.findall(r"crate::([A-Za-z0-9_]+)", code) if m != top)
for m in sorted(graph):
    print(f"{m} -> {', '.join(sorted(graph[m])) or '(nothing)'}")
state, stack = {}, []
def visit(n):
    state[n] = 1; stack.append(n)
    for d in sorted(graph.get(n, ())):
        if state.get(d) == 1:
            return stack[stack.index(d):] + [d]
        if not state.get(d):
            c = visit(d)
            if c: return c
    stack.pop(); state[n] = 2
for n in sorted(graph):
    if not state.get(n):
        c = visit(n)
        if c:
            print("circle: " + " -> ".join(c)); sys.exit(1)
print("no circle among top-level modules")
PY
