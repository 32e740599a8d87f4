"""The one place ONNX Runtime sessions are made: the GPEN restorer, the face detectors, the parsing masker,
the export check.

Every session is quiet (errors only), by default never busy-waits between runs (its threads share the cores
with decode, compose and encode), and a file ONNX Runtime cannot load becomes a ``ModelError`` that names it.

ONNX Runtime does not fail when an execution provider cannot load (the CUDA or TensorRT libraries are missing or
of the wrong version): it logs a warning and runs on the providers that did load, often the CPU alone, many times
slower. ``require`` names the providers a session must have; a session without one of them is refused in one
line that names the providers that did load.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpen_video.errors import DependencyError, ModelError

if TYPE_CHECKING:
    import onnxruntime

CPU_ONLY: tuple[str, ...] = ("CPUExecutionProvider",)


def usable_cores() -> int:
    """The cores this process may use: a container's or taskset's limit where the system tells it, else all of
    them (at least one). Here, in the base layer, so the sessions' threads and the run's workers count alike."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads() -> int:
    """A quarter of the cores this process may use (``usable_cores``), at least one."""
    return max(1, usable_cores() // 4)


def ort_session(
    path: str | Path,
    providers: Sequence[str | tuple[str, dict[str, Any]]] = CPU_ONLY,
    threads: int | None = 0,
    inter_op_threads: int = 0,
    spin: bool = False,
    what: str = "ONNX model",
    memory_arena: bool = True,
    require: Sequence[str] = (),
    hint: str = "",
    optimize: bool = True,
) -> onnxruntime.InferenceSession:
    """An inference session for ``path`` on ``providers``.

    ``threads``: intra-op threads; 0 means ``default_threads()``, None leaves ONNX Runtime's own choice
    (the restorer: one big network). ``spin``: let idle threads busy-wait for the next operator (the
    restorer keeps ONNX Runtime's default; detectors must not). ``what`` names the model in the error
    message ("ONNX face detector", "GPEN restorer"). ``memory_arena=False``: no CPU arena and no memory
    patterns, for networks fed ever-changing input shapes (MTCNN's pyramid and candidate batches), where the
    arena only keeps the high-water mark, grown in power-of-two steps, for the rest of the run.
    ``require``: providers the session must have loaded, else a ``DependencyError`` naming those it has, ending
    with ``hint`` (what to install or use instead). ``optimize=False``: no graph optimisation, for a session that
    only reads the file's inputs and outputs.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DependencyError(f"running the {what} needs onnxruntime: pip install onnxruntime") from exc
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{what} not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads if threads > 0 else default_threads()
    if inter_op_threads:
        options.inter_op_num_threads = inter_op_threads
    if not memory_arena:
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load {path}: not a usable {what} ({reason})") from exc
    check_providers(session, require, what, hint)
    return session


def short_name(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``CUDA``; ``TensorrtExecutionProvider`` -> ``TensorRT``."""
    name = provider.removesuffix("ExecutionProvider")
    return "TensorRT" if name == "Tensorrt" else name


def check_providers(session: onnxruntime.InferenceSession, require: Sequence[str], what: str, hint: str) -> None:
    """Refuse, in one line, a session that runs without a provider it was asked for (ONNX Runtime fell back)."""
    loaded = list(session.get_providers())
    missing = [p for p in require if p not in loaded]
    if missing:
        names = ", ".join(short_name(p) for p in missing)
        have = ", ".join(short_name(p) for p in loaded) or "none"
        raise DependencyError(
            f"ONNX Runtime could not load {names} for the {what} and would run it on {have} instead"
            + (f"; {hint}" if hint else "")
        )
