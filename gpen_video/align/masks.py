"""Soft masks in crop space: where a restored face replaces the frame, and how gently at its edge.

Sizes are fractions of the crop side. Because every crop is aligned to the same template, a fraction
of the crop is a fixed fraction of the face, so the feather is the same on a small face and a large
one. A face-parsing model (ONNX, 19 CelebAMask-HQ classes as GPEN's ParseNet) narrows the mask to the
face and hair where its file is given.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from gpen_video.errors import ModelError

log = logging.getLogger(__name__)

#: parsing classes not pasted (GPEN's MASK_COLORMAP): background, and the two its colour map zeroes
PARSING_EXCLUDED = (0, 14, 18)


@lru_cache(maxsize=8)
def feather_mask(size: int, erode: float = 0.04, blur: float = 0.08) -> np.ndarray:
    """(size, size) float32 in [0, 1]: 1 inside, a Gaussian ramp, exactly 0 for a margin at the crop's edge.

    ``erode`` pulls the edge in; ``blur`` is the width of the ramp. Both are fractions of the crop side.
    The mask reaches 0 before the crop's border, so replicated border pixels are never pasted.
    """
    sigma = max(blur * size / 4.0, 0.5)
    inset = erode * size + 2.5 * sigma
    coords = np.arange(size, dtype=np.float64) + 0.5
    # distance inside the inset rectangle, per axis; a smooth ramp via the normal CDF of that distance
    from scipy.special import ndtr

    def ramp(d: np.ndarray) -> np.ndarray:
        return ndtr((d - inset - 1.25 * sigma) / sigma)

    ramp_axis = np.minimum(ramp(coords), ramp(size - coords))
    mask = np.outer(ramp_axis, ramp_axis).astype(np.float32)
    mask[mask < 1.0 / 1024] = 0.0
    mask[mask > 1.0 - 1.0 / 4096] = 1.0
    mask.setflags(write=False)
    return mask


class ParsingMasker:
    """Face-parsing masks from an ONNX model (input 1×3×512×512 RGB in [-1, 1], output 1×19×512×512 logits)."""

    def __init__(self, path: str | Path, excluded: tuple[int, ...] = PARSING_EXCLUDED):
        from gpen_video.ort_session import CPU_ONLY, ort_session

        path = Path(path).expanduser()
        if not path.is_file():
            raise ModelError(f"face-parsing model not found: {path}")
        self._session = ort_session(path, CPU_ONLY, threads=None, spin=True, what="ONNX face-parsing model")
        model_input = self._session.get_inputs()[0]
        self._input = model_input.name
        shape = model_input.shape
        self._size = shape[-1] if isinstance(shape[-1], int) else 512
        self.excluded = excluded

    def masks(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) float32 in [0, 1] for (N, S, S, 3) BGR crops (uint8 or uint16)."""
        out = []
        for crop in crops:
            size = crop.shape[0]
            image = crop.astype(np.float32) / (65535.0 if crop.dtype == np.uint16 else 255.0)
            small = cv2.resize(image, (self._size, self._size), interpolation=cv2.INTER_AREA)
            blob = (small[:, :, ::-1] * 2.0 - 1.0).transpose(2, 0, 1)[None].astype(np.float32)
            logits = self._session.run(None, {self._input: np.ascontiguousarray(blob)})[0]
            labels = np.argmax(logits[0], axis=0)
            keep = (~np.isin(labels, self.excluded)).astype(np.float32)
            border = max(1, round(26 * self._size / 512))  # GPEN's mask_postprocess: zero a border, blur
            keep[:border], keep[-border:], keep[:, :border], keep[:, -border:] = 0, 0, 0, 0
            sigma = 4.0 * self._size / 512
            keep = cv2.GaussianBlur(keep, (0, 0), sigma)
            keep = cv2.GaussianBlur(keep, (0, 0), sigma)
            out.append(cv2.resize(keep, (size, size), interpolation=cv2.INTER_LINEAR))
        return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32) if out else np.zeros((0, 0, 0), np.float32)


@lru_cache(maxsize=2)
def parsing_masker(path: str) -> ParsingMasker:
    return ParsingMasker(path)
