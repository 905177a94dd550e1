#!/usr/bin/env python3
"""Prints the region crate's top-level module dependency graph and fails on a cycle.

Crates already enforce the model -> store -> region direction; inside the
region crate this checks the modules (`crate::<module>` paths and `use
crate::...` imports), so a cycle like lifecycle -> power -> link -> lifecycle
cannot come back unnoticed. Run: python3 scripts/module-graph.py [region/src]

It also checks the layers: the API sits on top of the services, and only
`serve` (which wires the process together) may use it.
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "region/src")
# Names that are re-exported crates, not modules of this crate.
external = {"model", "store"}
modules = {}
for path in sorted(root.rglob("*.rs")):
    rel = path.relative_to(root)
    top = rel.parts[0].removesuffix(".rs")
    if top in ("lib", "main"):
        continue
    text = path.read_text()
    # Ignore comments (doc links to other modules are not dependencies).
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    deps = set(re.findall(r"crate::([a-z_]+)", code))
    for group in re.findall(r"use crate::\{([^}]*)\}", code):
        deps |= set(re.findall(r"\b([a-z_]+)\b", group))
    modules.setdefault(top, set()).update(deps - {top} - external)

for module in sorted(modules):
    print(f"{module} -> {', '.join(sorted(modules[module] & modules.keys())) or '(nothing)'}")

state = {}
def visit(node, stack):
    state[node] = "open"
    for dep in sorted(modules.get(node, ()) & modules.keys()):
        if state.get(dep) == "open":
            cycle = stack[stack.index(dep):] + [dep]
            sys.exit("cycle: " + " -> ".join(cycle))
        if dep not in state:
            visit(dep, stack + [dep])
    state[node] = "done"

for module in sorted(modules):
    if module not in state:
        visit(module, [module])
print("no cycles")

on_top = {"api": {"serve"}}
for layer, allowed in on_top.items():
    users = sorted(m for m, deps in modules.items() if layer in deps and m not in allowed)
    if users:
        sys.exit(f"{', '.join(users)} must not use {layer} (only {', '.join(sorted(allowed))} may)")
print("layers hold: only serve uses api")
