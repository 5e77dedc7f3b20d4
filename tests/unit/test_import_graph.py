"""The package's modules import one way: no module imports one that imports it back.

Every import counts: at module level, inside functions, and under TYPE_CHECKING
(a cycle hidden there still ties two modules' designs together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "mcpmux"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                # "from . import era" names a module; "from .x import y" may name one too.
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            for t in targets:
                if t in modules and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _package_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}


def test_no_module_imports_one_that_imports_it_back() -> None:
    cycle = find_cycle(import_graph(_package_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("sources", "cycle"),
    [
        ({"a": "from . import b", "b": "def f():\n    from .a import x\n"}, True),
        ({"a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
          "b": "import pkg.a\n"}, True),
        ({"a": "from . import b", "b": "import json\n"}, False),
    ],
)
def test_the_check_sees_cycles_in_functions_and_type_checking(tmp_path: Path, sources: dict[str, str],
                                                              cycle: bool) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    modules = {"pkg": pkg / "__init__.py"}
    for name, text in sources.items():
        (pkg / f"{name}.py").write_text(text)
        modules[f"pkg.{name}"] = pkg / f"{name}.py"
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        found = find_cycle(import_graph(modules))
    finally:
        SRC = saved
    assert (found is not None) is cycle, found
