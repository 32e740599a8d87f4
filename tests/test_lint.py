"""The code base stays ruff-clean (lint, format, and mccabe complexity at most 12, in pyproject.toml), and no
function is longer than ``MAX_FUNCTION_LINES``, as the house style asks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 60  # from `def` to its last line, docstring included


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check():
    result = _ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = _ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def long_functions(source: str) -> list[tuple[str, int]]:
    """The functions in ``source`` longer than ``MAX_FUNCTION_LINES``: (name, lines)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                found.append((node.name, lines))
    return found


def test_no_function_is_over_the_line_limit():
    offenders = {}
    for folder in ("gpen_video", "bench", "scripts", "samples", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            found = long_functions(path.read_text(encoding="utf-8"))
            if found:
                offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}, f"split these into named steps (at most {MAX_FUNCTION_LINES} lines a function)"


def test_the_line_limit_sees_a_long_function():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def f():\n{body}") == [("f", MAX_FUNCTION_LINES + 1)]
    assert long_functions("def g():\n    return 1\n") == []
