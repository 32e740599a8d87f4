"""bench/gpu_suite.sh runs on a bare lent GPU machine with no network (issue 24): what it needs is there or carried.

Static checks only (no network, no wheel): bench/gpu_packages.txt names each runtime requirement of
pyproject.toml as on the machine ([machine]) or carried as a wheel ([carry], at the lock's version and inside
pyproject's range), the carried packages' own needs are met there too, every module the suite imports at module
level (gpen_video, the benches it runs, conftest and the gpu tests with their helpers) imports only from those,
and the steps' time limits fit the budget. ``bash bench/gpu_suite.sh --check`` is the proof that runs: a clean
Python 3.12 venv of the machine's packages, the wheels installed as there, and every step on the CPU.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from gpu_packages import canonical, machine_names, pins, sections  # noqa: E402

SUITE = ROOT / "bench" / "gpu_suite.sh"
#: import name -> distribution, for the imports the suite's modules make at module level
DISTRIBUTION = {"av": "av", "cv2": "opencv-python-headless", "numpy": "numpy", "onnx": "onnx",
                "onnxruntime": "onnxruntime", "pytest": "pytest", "safetensors": "safetensors",
                "scenedetect": "scenedetect", "scipy": "scipy", "torch": "torch", "tqdm": "tqdm",
                "yaml": "pyyaml"}  # fmt: skip
#: first-party modules (the tree is on the path there)
FIRST_PARTY = {"gpen_video", "baseline", "io_bench", "model_bench", "pipeline_bench", "gpu_packages", "conftest",
               "model_helpers", "media_checks", "faces_helpers"}  # fmt: skip
#: a carried package that asks for opencv-python gets the machine's opencv-python-headless (the same cv2)
SAME_AS = {"opencv-python": "opencv-python-headless"}


def _lock() -> dict[str, str]:
    lines = (ROOT / "requirements" / "lock-cpu.txt").read_text().splitlines()
    return {canonical(m[1]): m[2] for m in (re.match(r"^([^#=\s]+)==(\S+)$", line) for line in lines) if m}


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def test_every_runtime_requirement_is_on_the_machine_or_carried() -> None:
    machine, carry = machine_names(), set(pins("carry"))
    assert not machine & carry, "a package the machine has is carried too (two versions stop the install)"
    missing = [str(r) for r in _runtime_requirements() if canonical(r.name) not in machine | carry]
    assert missing == [], f"add these to bench/gpu_packages.txt [carry] (and run bench/gpu_wheels.sh): {missing}"


def test_carried_wheels_are_the_locked_versions_inside_the_ranges() -> None:
    lock = _lock()
    ranges = {canonical(r.name): r.specifier for r in _runtime_requirements()}
    for name, version in pins("carry").items():
        if name in lock:
            assert version == lock[name], f"[carry] {name}=={version}, the lock has {lock[name]}"
        if name in ranges:
            assert ranges[name].contains(version, prereleases=True), f"{name}=={version} is outside {ranges[name]}"


def test_carried_packages_needs_are_met_on_the_machine() -> None:
    """Read from the installed distributions' metadata (the test install holds every carried package)."""
    have = machine_names() | set(pins("carry"))
    for name in pins("carry"):
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            pytest.skip(f"{name} is not installed here: its needs cannot be read without the network")
        for need in map(Requirement, needs):
            if need.marker is not None and not need.marker.evaluate({"extra": "", "python_version": "3.12"}):
                continue  # an extra's need, or another Python's
            wanted = SAME_AS.get(canonical(need.name), canonical(need.name))
            assert wanted in have, f"{name} needs {need}, which neither the GPU machine nor .whl/ has"


def _suite_modules() -> list[Path]:
    gpu_tests = [p for p in (ROOT / "tests").glob("test_*.py") if re.search(r"pytest\.mark\.gpu", p.read_text())]
    helpers = [ROOT / "tests" / f"{m}.py" for m in ("conftest", "model_helpers", "media_checks", "faces_helpers")]
    benches = [ROOT / "bench" / f"{m}.py" for m in ("gpu_env", "gpu_summary", "gpu_packages", "model_bench",
                                                     "pipeline_bench", "io_bench", "baseline")]  # fmt: skip
    return sorted((ROOT / "gpen_video").rglob("*.py")) + helpers + benches + gpu_tests


def _module_level_imports(path: Path) -> set[str]:
    """Top-level names imported when the module loads (not inside functions or TYPE_CHECKING blocks)."""
    names: set[str] = set()
    pending = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
    return names


def test_the_suites_modules_import_only_what_the_machine_has_or_the_wheels_bring() -> None:
    have = machine_names() | set(pins("carry"))
    for path in _suite_modules():
        for name in _module_level_imports(path) - set(sys.stdlib_module_names) - FIRST_PARTY:
            assert name in DISTRIBUTION, f"{path.relative_to(ROOT)} imports {name}: name its distribution here"
            assert canonical(DISTRIBUTION[name]) in have, f"{path.relative_to(ROOT)} imports {name}, not on the machine"


def test_the_gpu_steps_fit_the_budget() -> None:
    """The caps of the steps before compile sum under the GPU budget, which leaves the device tool's 600 s room."""
    text = SUITE.read_text()
    budget = int(re.search(r"^BUDGET=\$\{GPU_SUITE_BUDGET:-.* \|\| echo (\d+)\)\}$", text, re.M)[1])
    gpu_branch = text.split('if [ "$DRY" = 1 ]; then', 1)[1].split("\nelse\n", 1)[1].split("\nfi\n", 1)[0]
    caps = {m[1]: int(m[2]) for m in re.finditer(r"^\s*step (\w+) (\d+)", gpu_branch, re.M)}
    wheels = int(re.search(r"^\s*step wheels (\d+)", text, re.M)[1])
    assert list(caps) == ["env", "model", "pipeline", "tests", "compile"]
    assert wheels + sum(v for k, v in caps.items() if k != "compile") < budget <= 540


def test_the_wheels_are_installed_as_the_device_notes_say_and_ignored_by_git() -> None:
    text = SUITE.read_text()
    assert "-m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade" in text
    assert "/.whl/" in (ROOT / ".gitignore").read_text().splitlines()
    assert set(sections()) == {"machine", "also-there", "carry"}
