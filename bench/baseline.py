"""Run a bench against an older version of the code in the same session: new/old ratios, alternating runs.

``--against COMMIT`` (or a folder holding a checkout) makes a bench run itself in subprocesses, in turn
with this checkout and with that code on ``PYTHONPATH`` (``git archive COMMIT`` unpacked under the temp
folder once), ``--rounds`` times each, alternating so that a load spike on a shared machine hits both;
every figure keeps its best round, and the bench prints new/old for each. The bench script itself is this
checkout's in both runs: it must use only what both versions offer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def baseline_tree(against: str) -> Path:
    """A folder holding the code of ``against`` (a folder as is, or a commit unpacked with ``git archive``)."""
    folder = Path(against)
    if (folder / "gpen_video").is_dir():
        return folder
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", against], check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    tree = Path(tempfile.gettempdir()) / f"gpen-video-base-{commit}"
    if not (tree / "gpen_video").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def run_version(script: Path, argv: list[str], code: Path) -> dict[str, float]:
    """``script argv --json FILE`` with ``code`` first on the import path; the figures it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        env = {**os.environ, "PYTHONPATH": str(code), "GPEN_VIDEO_CODE": str(code)}
        subprocess.run([sys.executable, str(script), *argv, "--json", str(out)], env=env, check=True)
        return json.loads(out.read_text())["figures"]


def compare(
    script: Path, argv: list[str], against: str, rounds: int, higher_is_better: Callable[[str], bool]
) -> dict[str, tuple[float, float]]:
    """Best figure of each version over ``rounds`` alternating runs: name -> (new, old).

    ``argv``: the bench's own arguments; ``--against``, ``--rounds`` and ``--json`` are taken out.
    """
    argv = _without(argv, {"--against", "--rounds", "--json"})
    old_code = baseline_tree(against)
    best: dict[str, dict[str, float]] = {"new": {}, "old": {}}
    for _ in range(rounds):
        for version, code in (("new", ROOT), ("old", old_code)):
            for name, value in run_version(script, argv, code).items():
                pick = max if higher_is_better(name) else min
                best[version][name] = pick(value, best[version].get(name, value))
    return {name: (value, best["old"][name]) for name, value in best["new"].items() if name in best["old"]}


def print_ratios(figures: dict[str, tuple[float, float]], against: str, unit: str) -> None:
    """One line per figure: new, old, new/old (a figure named ``... ms/...`` is a time: old/new instead)."""
    print(f"\nnew (this checkout) vs old ({against}), best of each; speed ratio (>1: new is faster)")
    for name, (new, old) in figures.items():
        is_time = " ms/" in name
        ratio = old / new if is_time else new / old
        shown = "" if is_time else f" {unit}"
        print(f"   {name:52s} new {new:9.3f}  old {old:9.3f}{shown}   ratio {ratio:5.2f}")


def _without(argv: list[str], options: set[str]) -> list[str]:
    """``argv`` less ``options`` and their values (``--opt v`` and ``--opt=v``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif arg.split("=", 1)[0] not in options:
            out.append(arg)
    return out
