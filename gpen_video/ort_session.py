"""The one place ONNX Runtime sessions are made: the GPEN restorer, the face detectors, the parsing masker,
the export check.

Every session is quiet (errors only), by default never busy-waits between runs (its threads share the cores
with decode, compose and encode), and a file ONNX Runtime cannot load becomes a ``ModelError`` that names it.
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


def default_threads() -> int:
    """A quarter of the cores this process may use (a container's or taskset's limit), at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 4)


def ort_session(
    path: str | Path,
    providers: Sequence[str | tuple[str, dict[str, Any]]] = CPU_ONLY,
    threads: int | None = 0,
    inter_op_threads: int = 0,
    spin: bool = False,
    what: str = "ONNX model",
    memory_arena: bool = True,
) -> onnxruntime.InferenceSession:
    """An inference session for ``path`` on ``providers``.

    ``threads``: intra-op threads; 0 means ``default_threads()``, None leaves ONNX Runtime's own choice
    (the restorer: one big network). ``spin``: let idle threads busy-wait for the next operator (the
    restorer keeps ONNX Runtime's default; detectors must not). ``what`` names the model in the error
    message ("ONNX face detector", "GPEN restorer"). ``memory_arena=False``: no CPU arena and no memory
    patterns, for networks fed ever-changing input shapes (MTCNN's pyramid and candidate batches), where the
    arena only keeps the high-water mark, grown in power-of-two steps, for the rest of the run.
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
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load {path}: not a usable {what} ({reason})") from exc
