"""What one GPEN forward holds on its device, measured by running the network on the meta device.

The meta device computes shapes only, so the official 2048 network "runs" in a fraction of a second and no
memory. ``PeakTracker`` (a ``TorchDispatchMode``) adds up the bytes of every storage an operation creates and
takes them off when the storage is freed (a weak reference to it), which gives the peak of the live tensors.
A batch of one and a batch of two give the bytes each face adds (``Footprint.per_face``) and those that do not
depend on the batch (``fixed``: weight casts, styles). The forward measured is the restorer's: uint8 crops in
(already held, not counted), ``preprocess``, the cast to the network's precision, the network in inference mode
(the in-place path), ``postprocess``.

Measured so (``torch_backend.meta_footprint``; ``python bench/footprint.py`` prints the table), bytes per
output pixel per face, as released (channel multiplier 2, narrow 1):

=====  =====  =========
size   fp32   fp16/bf16
=====  =====  =========
512    1786   893
1024   906    453
2048   462    231
=====  =====  =========

A device allocates more than the live tensors: convolution workspaces and the allocator's rounding. On a CPU
the allocator's own count (the profiler's "Total Allocated") peaked 1.28× above this figure for fp32 at 64 and
128 px (``tests/test_model_footprint.py`` re-measures it); ``HEADROOM`` allows 1.35×, and an out-of-memory error
still halves the batch (``restore.backoff``). The figure this replaces, 1600/800 B per pixel, was the official
code's peak RSS at 2048 px (spec 1.6): the per-face grouped convolution and ``upfirdn2d_native``'s zero-filled
copies, 3.5× more than this network holds.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

#: device bytes per byte of live tensors the meta device counts (workspaces, allocator rounding)
HEADROOM = 1.35


@dataclass(frozen=True)
class Footprint:
    """Peak bytes of one forward: ``fixed + batch · per_face``."""

    per_face: int
    fixed: int

    def bytes_for(self, batch: int) -> int:
        return self.fixed + batch * self.per_face


class PeakTracker(TorchDispatchMode):
    """Counts the bytes of the storages operations create while it is active, and their peak.

    Storages that exist before (``existing``: the weights, the input) are not counted when an operation returns
    a view of them. A storage is counted off when it is freed: torch keeps one Python object per storage while
    the storage lives, so a weak reference to it dies with it.
    """

    def __init__(self, existing: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        storages = [t.untyped_storage() for t in existing]
        self.known: dict[int, Any] = {id(storage): storage for storage in storages}
        self.live = 0
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                self._count(item.untyped_storage())
        return out

    def _count(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        if key in self.known:
            return
        nbytes = storage.nbytes()
        self.known[key] = weakref.ref(storage, functools.partial(self._freed, key, nbytes))
        self.live += nbytes
        self.peak = max(self.peak, self.live)

    def _freed(self, key: int, nbytes: int, _ref: object) -> None:
        self.known.pop(key, None)
        self.live -= nbytes


def peak_bytes(fn: Callable[[], object], existing: Iterable[torch.Tensor] = ()) -> int:
    """The peak of the live bytes ``fn`` creates (its result freed before it returns counts too)."""
    with PeakTracker(existing) as tracker:
        fn()
    return tracker.peak


def footprint_of(
    run: Callable[[torch.Tensor], object], make_input: Callable[[int], torch.Tensor], existing: Iterable[torch.Tensor]
) -> Footprint:
    """The footprint of ``run`` (one forward, in inference mode) from its peaks at a batch of one and of two.

    ``make_input(batch)``: the batch ``run`` takes (held by the caller, not counted); ``existing``: tensors
    that live anyway (the weights), whose views are not new memory.
    """
    existing = list(existing)
    peaks = []
    for batch in (1, 2):
        x = make_input(batch)
        with torch.inference_mode():
            peaks.append(peak_bytes(lambda x=x: run(x), [*existing, x]))
    one, two = peaks
    return Footprint(per_face=two - one, fixed=max(0, 2 * one - two))
