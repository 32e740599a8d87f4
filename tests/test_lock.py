"""requirements/lock-cpu.txt, the versions setup.sh installs, agrees with pyproject.toml's ranges (issue 22).

pyproject.toml keeps ranges for library users; the lock pins every distribution a test install holds, so a
fresh clone installs next month what the tests passed with today. These checks read only files and the
installed distributions' metadata (no network): each requirement setup.sh installs is pinned inside its
range, nothing pinned is left over, nothing installed is missing, and the environment is the lock.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock-cpu.txt"
SETUP = ROOT / "scripts" / "setup.sh"
PIN = re.compile(r"^([a-z0-9][a-z0-9.-]*)==([^\s;#]+)$")
# torch's CUDA wheels depend on these; the lock is made with the CPU torch, and a CUDA torch pins them itself
CUDA_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lock_lines() -> list[str]:
    return [line.strip() for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _pins() -> dict[str, Version]:
    return {m[1]: Version(m[2]) for m in map(PIN.match, _lock_lines()) if m}


def _installed_extras() -> tuple[str, ...]:
    """The extras that setup.sh installs with gpen-video (`-e ".[test]"`)."""
    found = re.findall(r'-e "\.\[([a-z,]+)\]"', SETUP.read_text())
    return tuple(sorted({extra for group in found for extra in group.split(",")}))


def _top_requirements() -> list[Requirement]:
    project = _pyproject()["project"]
    names = [*project["dependencies"]]
    for extra in _installed_extras():
        names += project["optional-dependencies"][extra]
    return [Requirement(r) for r in names]


def test_every_line_is_one_exact_pin_sorted_by_name() -> None:
    lines = _lock_lines()
    assert lines and all(PIN.match(line) for line in lines), [line for line in lines if not PIN.match(line)]
    names = [PIN.match(line)[1] for line in lines]
    assert names == sorted(set(names)), "one line per distribution, sorted"
    assert all(canonicalize_name(n) == n for n in names), "names as pip compares them"
    assert "+" not in str(_pins()["torch"]), "torch's version only: its build (CPU or CUDA) is setup.sh's choice"


def test_setup_installs_both_readme_commands_with_the_lock() -> None:
    text = SETUP.read_text()
    assert "requirements/lock-cpu.txt" in text
    installs = [line for line in text.splitlines() if re.search(r"\bpip install\b", line)]
    assert len(installs) >= 3 and all('"${constraints[@]}"' in line for line in installs), installs
    assert _installed_extras() == ("test",)


def test_every_requirement_setup_installs_is_pinned_inside_its_range() -> None:
    pins = _pins()
    for req in _top_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is in pyproject.toml but not pinned in {LOCK.name}: run scripts/refresh_lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), f"{LOCK.name} pins {name}=={pins[name]}: {req}"


def test_pins_of_the_other_extras_are_inside_their_ranges() -> None:
    pins = _pins()
    for extra, reqs in _pyproject()["project"]["optional-dependencies"].items():
        for req in map(Requirement, reqs):
            name = canonicalize_name(req.name)
            if name in pins:
                assert req.specifier.contains(pins[name], prereleases=True), (extra, str(req), str(pins[name]))


def test_the_lock_is_for_this_python_and_pyproject_allows_its_pythons() -> None:
    (line,) = [line for line in LOCK.read_text().splitlines() if line.startswith("# python:")]
    pythons = line.split(":", 1)[1].split()
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert pythons and all(requires.contains(f"{v}.0") for v in pythons), (pythons, str(requires))
    assert "{}.{}".format(*sys.version_info[:2]) in pythons, "setup.sh refuses a Python the lock is not for"


def _requirements_of(name: str, extras: frozenset[str]) -> list[Requirement]:
    reqs = []
    for text in distribution(name).requires or []:
        req = Requirement(text)
        envs = [{"extra": e} for e in sorted(extras)] or [{"extra": ""}]
        if req.marker is None or any(req.marker.evaluate(env) for env in envs):
            reqs.append(req)
    return reqs


def _installed_closure() -> set[str]:
    """Every distribution pulled in by pyproject's requirements (and setup.sh's extras), from installed metadata."""
    todo = [r for r in _top_requirements() if r.marker is None or r.marker.evaluate()]
    seen: dict[str, frozenset[str]] = {}
    while todo:
        req = todo.pop()
        name, extras = canonicalize_name(req.name), frozenset(req.extras)
        if CUDA_ONLY.match(name) or (name in seen and extras <= seen[name]):
            continue
        seen[name] = extras | seen.get(name, frozenset())
        todo += _requirements_of(name, seen[name])
    return set(seen)


def test_the_lock_is_exactly_what_the_requirements_pull_in() -> None:
    """Nothing pinned is left over (a dependency dropped upstream) and nothing installed is unpinned."""
    try:
        closure = _installed_closure()
    except PackageNotFoundError as missing:
        pytest.fail(f"{missing} is required but not installed: run bash scripts/setup.sh --test")
    pinned = set(_pins())
    assert not pinned - closure, f"pinned but required by nothing: {sorted(pinned - closure)}"
    assert not closure - pinned, f"installed but not pinned: {sorted(closure - pinned)}"


def test_the_environment_under_test_is_the_lock() -> None:
    """What CI tests is what the lock says (torch aside: setup.sh keeps a torch already installed)."""
    wrong = {}
    for name, version in _pins().items():
        installed = Version(distribution(name).version)
        if installed != version and name != "torch":
            wrong[name] = (str(installed), str(version))
    assert not wrong, f"installed, locked: {wrong}; run bash scripts/setup.sh --test"
