"""The package imports one way: every import in gpen_video, at module level or inside a function, goes to its
own layer or a lower one (``LAYERS``), and no files and no packages import each other in a circle.

The layers, from the bottom: the base (errors, config, memory, the ONNX Runtime session factory), ``io``,
``faces``, ``align``, the restorer contract (``restore``), ``models``, the run of one input (``run``), what
runs many (``jobs``, ``preview``, the test and bench clips of ``synthetic``), and the command line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpen_video"

LAYERS = (
    {"gpen_video", "errors", "config", "memory", "ort_session"},
    {"io"},
    {"faces"},
    {"align"},
    {"restore"},
    {"models"},
    {"run"},
    {"jobs", "preview", "synthetic"},
    {"cli", "__main__"},
)


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its ``__init__``)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("gpen_video", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module an imported name lives in: the longest dotted prefix that is a module of the package."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imported(module: str, tree: ast.AST) -> Iterator[str]:
    """The package's modules that ``module`` imports, anywhere in its file (functions and TYPE_CHECKING too)."""
    is_package = MODULES[module].name == "__init__.py"
    base = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            parent = ".".join(base.split(".")[: len(base.split(".")) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (parent, node.module or "") if p)
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        yield from (_resolve(n) for n in names if n == "gpen_video" or n.startswith("gpen_video."))


def _file_graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[module] = {m for m in _imported(module, tree) if m != module}
    return graph


def unit(module: str) -> str:
    """The top-level package or module a module belongs to (``gpen_video`` itself for the package's face)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer(module: str) -> int:
    for level, units in enumerate(LAYERS):
        if unit(module) in units:
            return level
    raise AssertionError(f"{module}: in no layer; add its package to LAYERS in {Path(__file__).name}")


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


GRAPH = _file_graph()


def test_every_module_is_in_a_layer():
    assert sorted({layer(m) for m in MODULES}) == list(range(len(LAYERS)))


def test_no_import_runs_against_the_layer_order():
    upward = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets if layer(b) > layer(a)]
    assert upward == [], "an import reaches up a layer: move the code it needs down, or the importer up"


def test_no_circle_between_files():
    assert circles(GRAPH) == []


def test_no_circle_between_packages():
    packages: dict[str, set[str]] = {}
    for a, targets in GRAPH.items():
        packages.setdefault(unit(a), set()).update(unit(b) for b in targets if unit(b) != unit(a))
    assert circles(packages) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}}, [["a", "b", "c"]]),
    ],
)
def test_the_circle_finder_finds_circles(graph, expected):
    """The checks above can fail: the finder sees a circle where there is one, and none where there is none."""
    assert circles(graph) == expected


def test_the_layer_check_sees_an_upward_import():
    """An import from io up into run is caught by the same rule the package is held to."""
    assert layer("gpen_video.io.reader") < layer("gpen_video.run.sources")
    assert "gpen_video.io.reader" in GRAPH["gpen_video.run.sources"], "the graph holds the run's imports of io"
