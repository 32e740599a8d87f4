"""The package's layers and its import graph, declared and measured in one place; prints the package diagram.

    python scripts/import_layers.py          # the Mermaid diagram of the packages and their one-way imports

Every import in gpen_video (module level, inside a function, under TYPE_CHECKING) goes to its own layer or a
lower one (``LAYERS``, from the bottom: the base, io, faces, align, the restorer contract, models, the run of
one input, what runs many, the command line). ``tests/test_import_layers.py`` holds the package to it, and
``docs/architecture.md`` shows this script's diagram.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

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


def file_graph() -> dict[str, set[str]]:
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


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The file graph folded to top-level units (packages and top-level modules)."""
    packages: dict[str, set[str]] = {}
    for a, targets in graph.items():
        packages.setdefault(unit(a), set()).update(unit(b) for b in targets if unit(b) != unit(a))
    return packages


def diagram(packages: dict[str, set[str]]) -> str:
    """A Mermaid flowchart, top layer first, with each import drawn once and only where no other path already
    leads there (the transitive reduction), so the picture shows the layering rather than every arrow."""

    def reaches(start: str, goal: str, skip: str) -> bool:
        seen, todo = set(), [n for n in packages.get(start, ()) if n != skip]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(packages.get(node, ()))
        return False

    lines = ["flowchart TD"]
    for level in reversed(range(len(LAYERS))):
        members = sorted(u for u in packages if layer("gpen_video." + u if u != "gpen_video" else u) == level)
        lines.append(f"  subgraph L{level}[layer {level}]")
        lines += [f"    {u.strip('_')}[{u}]" for u in members]
        lines.append("  end")
    for a in sorted(packages):
        for b in sorted(packages[a]):
            if not reaches(a, b, skip=b):
                lines.append(f"  {a.strip('_')} --> {b.strip('_')}")
    return "\n".join(lines) + "\n"


def main() -> None:
    print(diagram(package_graph(file_graph())), end="")


if __name__ == "__main__":
    main()
