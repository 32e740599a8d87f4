"""Batches of faces gathered across frames, so the restorer runs full batches however few faces a frame has.

Frames arrive in order, each with zero or more aligned crops. The batcher holds them back until it
has ``batch_size`` crops (or its inbox is momentarily empty, or the stream ends), restores them in
batches of ``batch_size``, and releases the frames in the order they came. Frames without faces wait their
turn but are never sent to the restorer.

Every batch the restorer gets has exactly ``batch_size`` rows: a short one (the last, or one the idle inbox
sent early) is padded with black crops whose results are dropped. A network's result for one face depends
on the shape of the batch it ran in (convolution kernels are chosen, and their sums ordered, by shape: GPEN on
a CPU differs in the last bits between a batch of five and five batches of one), never on the other faces
in it, so with one shape a face comes out the same whatever the timing, a range's start or a segment's
length put beside it (measured bit-identical on GPEN's torch forward; ``tests/test_restore_contract.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from gpen_video.run.frame_path import FaceCrops, FramePath
from gpen_video.run.records import Aligned, Restored

if TYPE_CHECKING:
    from gpen_video.run.frame_path import Crops


class CrossFrameBatcher:
    """The ``restore`` stage of the flow: ``Aligned`` in, ``Restored`` out, in order."""

    name = "restore"

    def __init__(self, path: FramePath, batch_size: int, max_held_frames: int = 64) -> None:
        self.path = path
        self.batch_size = max(1, batch_size)
        self.max_held_frames = max_held_frames
        self.held: list[Aligned] = []
        self.held_crops = 0
        self.faces_restored = 0
        self.batches = 0
        self.largest_forward = 0  # the most faces one forward of the network really ran

    def process(self, item: Aligned) -> Iterable[Restored]:
        if item.faces is None and not self.held:
            return (Restored(item, None),)  # nothing waits for a batch ahead of it: straight on
        self.held.append(item)
        if item.faces is not None:
            self.held_crops += len(item.faces)
        if self.held_crops >= self.batch_size or len(self.held) >= self.max_held_frames:
            return self._release()
        return ()

    def idle(self) -> Iterable[Restored]:
        """Upstream is slower than us: restore what we have rather than wait for a full batch."""
        return self._release() if self.held else ()

    def finish(self) -> Iterable[Restored]:
        return self._release()

    def _release(self) -> list[Restored]:
        parts: list[FaceCrops] = [item.faces for item in self.held if item.faces is not None]
        restored_by_frame: dict[int, Restored] = {}
        if parts:
            with self.path.restoring(parts):
                crops = self.path.join([p.for_restorer for p in parts])
                chunks = [self._restore(crops[i : i + self.batch_size]) for i in range(0, len(crops), self.batch_size)]
                restored = chunks[0] if len(chunks) == 1 else self.path.join(chunks)
                done = self.path.mark()
            start = 0
            for item in self.held:
                if item.faces is not None:
                    count = len(item.faces)
                    restored_by_frame[id(item)] = Restored(item, restored[start : start + count], done)
                    start += count
            self.faces_restored += sum(len(i.faces) for i in self.held if i.faces is not None and i.emit)
        released = [restored_by_frame.get(id(item)) or Restored(item, None) for item in self.held]
        self.held, self.held_crops = [], 0
        return released

    def _restore(self, batch: Crops) -> Crops:
        self.batches += 1
        out = self.path.restore(_padded(batch, self.batch_size))[: len(batch)]
        limit = self.path.restorer.forward_limit()  # read after the call: an out-of-memory split lowers it
        self.largest_forward = max(self.largest_forward, min(len(batch), limit or len(batch)))
        return out


def _padded(batch: Crops, rows: int) -> Crops:
    """``batch`` with black crops added up to ``rows`` (host or device, as it is)."""
    missing = rows - len(batch)
    if missing <= 0:
        return batch
    if isinstance(batch, np.ndarray):
        return np.concatenate([batch, np.zeros((missing, *batch.shape[1:]), batch.dtype)])
    from gpen_video.models.compiled import pad_rows  # torch: the device path's crops

    return pad_rows(batch, rows)
