"""Batches of faces gathered across frames, so the restorer runs full batches however few faces a frame has.

Frames arrive in order, each with zero or more aligned crops. The batcher holds them back until it
has ``batch_size`` crops (or its inbox is momentarily empty, or the stream ends), restores them in
batches, and releases the frames in the order they came. Frames without faces wait their turn but
are never sent to the restorer.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any, Protocol

import numpy as np

from gpen_video.restore.restorer import Restorer


class CarriesCrops(Protocol):
    crops: Any  # (n, S, S, 3) uint8 array or device tensor, or None for a frame with nothing to restore
    restored: Any
    ready: Any  # device path: the event after which ``crops`` may be read


class CrossFrameBatcher:
    """The ``restore`` stage of the flow."""

    name = "restore"

    def __init__(self, restorer: Restorer, batch_size: int, max_held_frames: int = 64, stream: Any = None) -> None:
        self.restorer = restorer
        self.stream = stream  # device path: the compute stream (a ``StageStream``)
        self.batch_size = max(1, batch_size)
        self.max_held_frames = max_held_frames
        self.held: list[Any] = []
        self.held_crops = 0
        self.faces_restored = 0
        self.batches = 0

    def process(self, item: CarriesCrops) -> Iterable[Any]:
        has_crops = item.crops is not None and len(item.crops) > 0
        if not has_crops and not self.held:
            return (item,)  # nothing waits for a batch ahead of it: a faceless frame goes straight on
        self.held.append(item)
        if has_crops:
            self.held_crops += len(item.crops)
        if self.held_crops >= self.batch_size or len(self.held) >= self.max_held_frames:
            return self._release()
        return ()

    def idle(self) -> Iterable[Any]:
        """Upstream is slower than us: restore what we have rather than wait for a full batch."""
        return self._release() if self.held else ()

    def finish(self) -> Iterable[Any]:
        return self._release()

    def _release(self) -> list[Any]:
        with_faces = [item for item in self.held if item.crops is not None and len(item.crops)]
        if with_faces:
            parts = [item.crops for item in with_faces]
            running = nullcontext() if self.stream is None else self.stream.enter([i.ready for i in with_faces], parts)
            with running:
                crops = _concatenate(parts)
                restored = _concatenate(
                    [self._restore(crops[i : i + self.batch_size]) for i in range(0, len(crops), self.batch_size)]
                )
                done = None if self.stream is None else self.stream.mark()
            start = 0
            for item in with_faces:
                item.restored = restored[start : start + len(item.crops)]
                if self.stream is not None:
                    item.ready = done
                start += len(item.crops)
            self.faces_restored += len(crops)
        released, self.held, self.held_crops = self.held, [], 0
        return released

    def _restore(self, batch: Any) -> Any:
        self.batches += 1
        if isinstance(batch, np.ndarray):
            return self.restorer.restore(batch)
        return self.restorer.restore_device(batch)  # type: ignore[attr-defined] - the device path's tensors


def _concatenate(parts: list[Any]) -> Any:
    """NumPy arrays (CPU path) or torch tensors (device path), joined along the batch axis."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch

    return torch.cat(parts)
