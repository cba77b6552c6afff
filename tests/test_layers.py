"""The layout's rules, read from the source: imports go down the layers only, no module imports itself back through
a circle, the results and report layers stay light (report needs no torch), giva never imports the harness.

Layers of bench/, lowest first (a module may import its own layer's modules and any lower layer's):
    columns <- results, measure <- models <- tasks, adapters <- config <- run <- report <- track <- cli
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = [
    ["bench.columns"],
    ["bench.results", "bench.measure"],
    ["bench.models"],
    ["bench.tasks", "bench.adapters"],
    ["bench.config"],
    ["bench.run"],
    ["bench.report"],
    ["bench.track"],  # regression tracking: compare, history, change points, the rule, bisect, counts
    ["bench.cli", "bench.__main__"],
]
# Stricter than the layers: what each of these packages or modules may import of bench, and nothing else.
ONLY = {"bench.results": {"bench.columns", "bench.results"},
        "bench.report": {"bench.columns", "bench.results", "bench.report"},
        "bench.track.rules": {"bench.columns"},  # the rule is numerics on values: nothing else
        "bench.track.changes": {"bench.columns", "bench.track"}}  # change points: numerics, no I/O


def module_files(package: str) -> dict[str, str]:
    """{dotted module name: path} of every module under a top-level package."""
    found = {}
    for folder, _, files in os.walk(os.path.join(REPO, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def imports_of(module: str, path: str) -> set[str]:
    """Every module it imports, at the top or inside a function, relative imports resolved (`from . import x` gives
    package.x when x is a module)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    tree = ast.parse(open(path).read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            if node.module:  # `from . import x` imports the module x, not the package's __init__ again
                out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}
    return out


def graph(package: str) -> dict[str, set[str]]:
    files = module_files(package)
    return {module: {m for m in imports_of(module, path) if m in files and m != module}
            for module, path in files.items()}


def layer_of(module: str) -> tuple[int, str]:
    if module == "bench":  # the package's own __init__: empty, imports nothing
        return 0, "bench"
    for index, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                return index, name
    raise AssertionError(f"{module} belongs to no layer of tests/test_layers.py: add it")


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_bench_imports_go_down_the_layers_only():
    bad = []
    for module, targets in graph("bench").items():
        level, home = layer_of(module)
        for target in targets:
            target_level, target_home = layer_of(target)
            if target_level > level:
                bad.append(f"{module} imports {target} (layer {target_home} is above {home})")
            allowed = next((only for name, only in ONLY.items() if module == name or module.startswith(name + ".")),
                           None)
            if allowed is not None and target_home not in allowed:
                bad.append(f"{module} imports {target}: {home} may import only {sorted(allowed)}")
    assert bad == []


@pytest.mark.parametrize("package", ["bench", "giva"])
def test_no_import_circle(package):
    edges = graph(package)
    # a package's __init__ re-exporting its modules is not a circle with them
    assert circles(edges) == []


def test_giva_never_imports_the_harness():
    bad = [f"{m} imports {t}" for m, path in module_files("giva").items() for t in imports_of(m, path)
           if t == "bench" or t.startswith("bench.")]
    assert bad == []


def test_the_layer_rule_finds_an_upward_import_and_a_circle():
    """The checks above can fail: an upward import and a two-module circle, made up, are found."""
    assert layer_of("bench.report.summary")[0] > layer_of("bench.run.sweep")[0]
    assert circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_reading_results_and_reports_imports_no_torch():
    code = ("import sys, bench.report, bench.track.compare, bench.track.history, bench.track.changes, "
            "bench.track.verdict, bench.track.page, bench.results.read; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('bench.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    modules = eval(out)  # noqa: S307 - our own print of a list of names
    assert "torch" not in modules
    assert all(layer_of(m)[1] in ("bench.columns", "bench.results", "bench.report", "bench.track") or m == "bench"
               for m in modules)
