"""What travels between the stages of a restore run, one typed record per hand-over.

``Decoded`` (decode → faces) → ``Aligned`` (faces → restore) → ``Restored`` (restore → guard → compose) →
``Composed`` (compose → writer). Records are frozen: a stage makes its own record instead of filling in
fields of a shared one, and what a later stage no longer needs is simply not carried on. The side
streams' packets do not ride on these: they go to the writer on their own channel (``side_packets``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import av
import numpy as np

from gpen_video.io.reader import Frame
from gpen_video.run.frame_path import FaceCrops

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class Decoded:
    """A decoded frame and its upright working image (converted in the decode thread)."""

    frame: Frame
    image: np.ndarray  # (H, W, 3) uint8, or uint16 above 8 bits


@dataclass(frozen=True, eq=False)
class Aligned:
    """A frame after the faces stage: its faces aligned, or nothing to restore (``faces`` None)."""

    frame: Frame
    emit: bool  # False: a segment's warm-up frame, decoded for tracking only
    image: np.ndarray | None  # kept only when there are faces to paste back
    faces: FaceCrops | None


@dataclass(frozen=True, eq=False)
class Restored:
    """A frame after the restore stage: the restored crops of its faces (None: none); after the identity guard
    (``run.guard_stage``), also how far each face's blend is kept."""

    aligned: Aligned
    crops: np.ndarray | torch.Tensor | None  # (N, S, S, 3) uint8 BGR, on the side of the path
    ready: torch.cuda.Event | None = None  # CUDA: recorded after the restore that made ``crops``
    # each face's factor on ``compose.blend`` (0: the source face kept, 1: as restored); None: 1 for every face
    blend: tuple[float, ...] | None = None


@dataclass(frozen=True, eq=False)
class Composed:
    """A frame ready for the encoder."""

    frame: Frame
    emit: bool
    output: av.VideoFrame
