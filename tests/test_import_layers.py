"""The package imports one way: every import in gpen_video, at module level or inside a function, goes to its
own layer or a lower one, and no files and no packages import each other in a circle. The layers are declared
once, in scripts/import_layers.py, which also draws docs/architecture.md's package diagram.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SPEC = importlib.util.spec_from_file_location("import_layers", ROOT / "scripts" / "import_layers.py")
layers = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(layers)

GRAPH = layers.file_graph()
circles, layer = layers.circles, layers.layer


def test_every_module_is_in_a_layer():
    assert sorted({layer(m) for m in layers.MODULES}) == list(range(len(layers.LAYERS)))


def test_no_import_runs_against_the_layer_order():
    upward = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets if layer(b) > layer(a)]
    assert upward == [], "an import reaches up a layer: move the code it needs down, or the importer up"


def test_no_circle_between_files():
    assert circles(GRAPH) == []


def test_no_circle_between_packages():
    assert circles(layers.package_graph(GRAPH)) == []


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


def test_the_architecture_page_shows_the_packages_as_they_import():
    """docs/architecture.md's diagram is the one the script draws from the code today."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawn = layers.diagram(layers.package_graph(GRAPH))
    assert drawn in page, "run: python scripts/import_layers.py, and paste its diagram into docs/architecture.md"
