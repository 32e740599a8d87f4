"""What a precision promises on a GPU: fp32 without TF32, and no non-finite output passed on as pixels.

PyTorch lets cuDNN run fp32 convolutions in TF32 (a 10-bit mantissa) by default on Ampere and later GPUs, so an
"fp32" GPEN run would not be one. ``exact_fp32`` turns TF32 off for cuDNN convolutions and cuBLAS matmuls while
any fp32 CUDA restorer is open (counted: the first open saves the settings, the last close puts them back). The
settings are process-wide and read at every kernel call, so they stay put for the restorer's life rather than
flip around each forward while other threads (compose, an upscaler) use the GPU. Newer releases have a
per-operation setting (``torch.backends.cudnn.conv.fp32_precision``); mixing it with the older ``allow_tf32``
flags makes the older getter raise when cuDNN's conv and rnn settings differ, so the newer one is used where
there is one, for conv, rnn and matmul alike.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from gpen_video.errors import ModelError

_lock = threading.Lock()
_holders = 0
_saved: list[tuple[Any, str, Any]] = []


def _switches() -> list[tuple[Any, str, Any]]:
    """(settings object, attribute, value for exact fp32) for cuDNN convolutions and cuBLAS matmuls."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    conv = getattr(cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        owners = (conv, getattr(cudnn, "rnn", None), matmul)
        return [(owner, "fp32_precision", "ieee") for owner in owners if hasattr(owner, "fp32_precision")]
    return [(cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]


def hold_exact_fp32() -> None:
    """TF32 off until the matching ``release_exact_fp32`` (nested holds count)."""
    global _holders
    with _lock:
        if _holders == 0:
            switches = _switches()
            _saved[:] = [(owner, name, getattr(owner, name)) for owner, name, _ in switches]
            for owner, name, value in switches:
                setattr(owner, name, value)
        _holders += 1


def release_exact_fp32() -> None:
    """Undo one ``hold_exact_fp32``; the last one puts the settings back as they were."""
    global _holders
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders == 0:
            for owner, name, value in reversed(_saved):
                setattr(owner, name, value)
            _saved.clear()


def tf32_allowed() -> bool:
    """Whether cuDNN convolutions or cuBLAS matmuls may run fp32 in TF32 now."""
    return any(getattr(owner, name) != value for owner, name, value in _switches())


def all_finite(y: torch.Tensor) -> bool:
    """No inf or NaN in ``y``. On CUDA the answer comes back through pinned memory on a blocking event, so the
    calling thread sleeps until the forward is done instead of spinning a core the host stages could use."""
    ok = torch.isfinite(y).all()
    if not ok.is_cuda:
        return bool(ok)
    host = torch.empty((), dtype=torch.bool, pin_memory=True)
    host.copy_(ok, non_blocking=True)
    done = torch.cuda.Event(blocking=True)
    done.record(torch.cuda.current_stream(ok.device))
    done.synchronize()
    return bool(host)


def check_finite(y: torch.Tensor, what: str, precision: str) -> None:
    """Raise ``ModelError`` if the network's output ``y`` holds inf or NaN (they would become arbitrary pixels)."""
    if all_finite(y):
        return
    hint = (
        "run with --precision bf16 (fp32's range) or fp32"
        if precision == "fp16"
        else "the weights or the crops give inf/NaN: check the model file (gpen-video weights verify)"
    )
    raise ModelError(f"{what} in {precision} gave inf/NaN for a batch of {y.shape[0]} faces; {hint}")
