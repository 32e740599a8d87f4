"""Run a batch through a model, splitting it when the device runs out of memory.

The caller picks the batch size; a too-large one must cost speed, never frames. On an out-of-memory
error the batch is halved and retried, and the size that worked becomes the ceiling for later calls
(memory seldom frees up mid-run, and re-trying the big size every call would thrash the allocator).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from gpen_video.errors import ModelError

log = logging.getLogger(__name__)


def is_oom(exc: BaseException) -> bool:
    """True for CUDA (or other accelerator) out-of-memory errors, however the backend spells them."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "CUDNN_STATUS_ALLOC_FAILED" in text)


def _free_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class OomBackoff:
    """Splits batches on out-of-memory; remembers the largest batch that fits (``max_batch``)."""

    def __init__(self, max_batch: int | None = None, what: str = "the model") -> None:
        self.max_batch = max_batch
        self.what = what

    def run(self, fn: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        """``fn`` over ``batch`` (first dim), in chunks no larger than what fits; outputs concatenated."""
        n = batch.shape[0]
        if n == 0:
            return fn(batch)
        chunk = min(n, self.max_batch or n)
        outputs = []
        start = 0
        while start < n:
            part = batch[start : start + chunk]
            rows = part.shape[0]
            if rows < chunk:  # one forward shape: a face's result depends on its batch's shape (restore_stage)
                part = torch.cat([part, part.new_zeros((chunk - rows, *part.shape[1:]))])
            try:
                outputs.append(fn(part)[:rows])
                start += rows
                continue
            except Exception as exc:
                if not is_oom(exc):
                    raise
            # outside the except block: the traceback (and the tensors its frames hold) is gone, so
            # emptying the cache can really give the memory back
            del part
            _free_cache()
            if chunk == 1:
                raise ModelError(
                    f"out of device memory running {self.what} on a single face; "
                    "use --precision fp16/bf16, a smaller model, or --device cpu"
                )
            chunk = max(1, chunk // 2)
            self.max_batch = chunk
            log.warning("out of device memory; retrying with batches of %d", chunk)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)
