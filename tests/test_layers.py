"""aerun's modules import each other without a cycle, function-level imports included: each module can be read
and changed knowing only the ones below it. A package (aerun.models, aerun.data, aerun.report) counts as one node:
its __init__ and its modules belong together."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aerun"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def node(module: str) -> str:
    return ".".join(module.split(".")[:2])  # aerun.models.vae -> aerun.models


def graph() -> dict[str, set[str]]:
    """node -> the nodes it imports anywhere in its code (module level or inside functions)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = edges.setdefault(node(name), set())
        for item in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(item, ast.ImportFrom) and item.module and item.module.startswith("aerun"):
                names = [item.module, *(f"{item.module}.{alias.name}" for alias in item.names)]
            elif isinstance(item, ast.Import):
                names = [alias.name for alias in item.names if alias.name.startswith("aerun")]
            targets.update(node(n) for n in names if n in known and node(n) != node(name))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_aerun_imports_form_no_cycle():
    edges = graph()
    assert len(edges) > 20 and "aerun.train" in edges["aerun.report"]  # the graph is read, not empty
    assert cycles(edges) == []


def test_no_function_of_aerun_is_over_70_lines():
    """A function that tells two stories is split where the second begins (docs/development.md)."""
    long = []
    for name, path in modules().items():
        for item in ast.walk(ast.parse(path.read_text())):
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.end_lineno - item.lineno + 1 > 70:
                long.append(f"{name}.{item.name}: {item.end_lineno - item.lineno + 1} lines")
    assert len(modules()) > 30 and long == []
