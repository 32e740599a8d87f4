"""``torch.compile`` for a restorer's network: a few fixed batch shapes, every compile logged, eager when it cannot.

Dynamo specialises a graph on its input's shape (``dynamic=False``: GPEN's convolutions are fastest with every size
known), so each new batch size compiles anew (about a minute for GPEN-2048), and past
``torch._dynamo.config.recompile_limit`` (8 graphs of one function) dynamo would run the rest uncompiled. So a
compiled forward runs in *buckets* (``bucket``: 1, 2, 4, 8, 16, ...): the restorer pads a batch with zero rows
up to its bucket and slices the result, and the batcher's short batches and the out-of-memory back-off's
halving reuse the same few shapes. A face's result depends on its batch's shape, never on the other faces in it,
so the padding changes a real face no more than another batch size would (``tests/test_model_compile.py``).

``CompiledForward`` counts dynamo's graphs around each call: a compile is logged (INFO when a shape is first
met, WARNING when a shape it already ran compiles again: a guard failed), and a compile that fails, or the
recompile limit (a hard error under ``fullgraph=True``, not a quiet fall-back), is a WARNING after which the
network runs eager for good; ``eager`` says so and the restorer's name drops "compiled".

The mode is inductor's default: no CUDA graphs. ``reduce-overhead`` records a CUDA graph per shape, each with a
private memory pool as large as that bucket's activations (GBs at 2048 px, not shared between buckets), to save
kernel-launch time that is a small part of a GPEN forward.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gpen_video.restore.backoff import is_oom

log = logging.getLogger(__name__)


def bucket(rows: int) -> int:
    """The batch a forward of ``rows`` faces runs as when compiled: the next power of two."""
    return 1 << max(0, rows - 1).bit_length()


def bucket_at_most(rows: int) -> int:
    """The largest bucket no larger than ``rows`` (at least 1): a batch size no forward pads."""
    return bucket(max(1, rows) + 1) // 2


def buckets_up_to(rows: int) -> list[int]:
    """Every bucket a forward of at most ``rows`` faces may use, smallest first."""
    return [1 << i for i in range(bucket(rows).bit_length())]


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` with zero rows added up to ``rows`` (as it is when it has that many)."""
    missing = rows - x.shape[0]
    return x if missing <= 0 else torch.cat([x, x.new_zeros((missing, *x.shape[1:]))])


def graphs_compiled() -> int:
    """Graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _is_compile_error(exc: BaseException) -> bool:
    from torch._dynamo import exc as dynamo_exc

    return isinstance(exc, dynamo_exc.TorchDynamoException | dynamo_exc.FailOnRecompileLimitHit)


class CompiledForward:
    """``model`` through ``torch.compile`` (whole graph, static shapes) in batch buckets, compiles counted and logged.

    A call pads its batch to the bucket, lays it out in ``memory_format`` (a graph is specialised on its input's
    strides too) and returns the real rows. ``backend``: inductor, or any ``torch.compile`` backend (tests count
    compiles with their own). ``shapes``: the input shapes run so far; ``compiles``: dynamo graphs built for them;
    ``eager``: compiling gave up, the model runs uncompiled (in the same buckets).
    """

    def __init__(
        self,
        model: nn.Module,
        what: str,
        backend: str | Callable[..., Any] = "inductor",
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        self.model = model
        self.what = what
        self.memory_format = memory_format
        self.compiled = torch.compile(model, backend=backend, dynamic=False, fullgraph=True)
        self.shapes: set[tuple[int, ...]] = set()
        self.compiles = 0
        self.eager = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        x = pad_rows(x, bucket(rows)).contiguous(memory_format=self.memory_format)
        return (self.model(x) if self.eager else self._run(x))[:rows]

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        before = graphs_compiled()
        start = time.perf_counter()
        try:
            y = self.compiled(x)
        except Exception as exc:
            # a new shape's first call compiles: whatever fails there (but memory) is the compiler's failure
            if is_oom(exc) or not (shape not in self.shapes or _is_compile_error(exc)):
                raise
            self._give_up(shape, exc)
            return self.model(x)
        built = graphs_compiled() - before
        if built:
            self._compiled(shape, built, time.perf_counter() - start)
        self.shapes.add(shape)
        return y

    def _compiled(self, shape: tuple[int, ...], graphs: int, seconds: float) -> None:
        self.compiles += graphs
        if shape in self.shapes:
            log.warning(
                "torch.compile: %s compiled again for batches of %d (%.1f s): a guard failed; "
                "TORCH_LOGS=recompiles names it",
                self.what,
                shape[0],
                seconds,
            )
        else:
            log.info("torch.compile: %s compiled for batches of %d in %.1f s", self.what, shape[0], seconds)

    def _give_up(self, shape: tuple[int, ...], exc: Exception) -> None:
        self.eager = True
        root: BaseException = exc
        while (inner := root.__cause__ or getattr(root, "inner_exception", None)) is not None:
            root = inner  # dynamo wraps the compiler's own error
        reason = (str(root).strip().splitlines() or [""])[0][:300]
        log.warning(
            "torch.compile could not compile %s for batches of %d (%s: %s); it runs uncompiled from now on",
            self.what,
            shape[0],
            type(exc).__name__ if root is exc else f"{type(exc).__name__} from {type(root).__name__}",
            reason,
        )
