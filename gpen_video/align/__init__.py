"""Alignment of faces to the model's template, and composing restored faces back into frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpen_video.align.compose import AlignedBatch, ComposeResult, compose, match_colour
from gpen_video.align.masks import feather_mask
from gpen_video.align.warp import warp_cpu, warp_torch
from gpen_video.faces.geometry import face_to_crop
from gpen_video.faces.types import TrackedFace


def align_faces(image: np.ndarray, faces: Sequence[TrackedFace], size: int, template: str = "gpen") -> AlignedBatch:
    """Crops (N, size, size, 3) of ``image``'s faces aligned to ``template``, with their frame→crop transforms."""
    affines = np.stack([face_to_crop(f.landmarks5, size, template) for f in faces]) if faces else np.zeros((0, 2, 3))
    crops = (
        np.stack([warp_cpu(image, a, size) for a in affines])
        if len(affines)
        else np.zeros((0, size, size, image.shape[2]), image.dtype)
    )
    return AlignedBatch(crops=crops, affines=affines, frame_shape=tuple(image.shape[:2]))


def align_faces_torch(frame, faces: Sequence[TrackedFace], size: int, template: str = "gpen"):
    """As ``align_faces`` for a frame already on a torch device ((H, W, 3) tensor): (crops tensor, affines)."""
    affines = np.stack([face_to_crop(f.landmarks5, size, template) for f in faces]) if faces else np.zeros((0, 2, 3))
    return warp_torch(frame, affines, size), affines


__all__ = [
    "AlignedBatch",
    "ComposeResult",
    "align_faces",
    "align_faces_torch",
    "compose",
    "feather_mask",
    "match_colour",
    "warp_cpu",
    "warp_torch",
]
