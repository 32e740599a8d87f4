"""Display rotation: faces are found on the upright picture, pixels are stored as they came.

PyAV reports a display matrix as a counter-clockwise angle (FFmpeg's ``av_display_rotation_get``);
players show the picture rotated by that angle, so the upright image is ``rot90(image, angle/90)``.
"""

from __future__ import annotations

import numpy as np


def normalize_rotation(angle: float | int | None) -> int:
    """Round a display angle to the nearest multiple of 90 in [0, 360)."""
    if angle is None:
        return 0
    return round(float(angle) / 90.0) % 4 * 90


def rotate_image(image: np.ndarray, rotation: int) -> np.ndarray:
    """Stored pixels -> upright picture, as a player would show it."""
    k = normalize_rotation(rotation) // 90
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def unrotate_image(image: np.ndarray, rotation: int) -> np.ndarray:
    """Upright picture -> stored pixel orientation (the inverse of ``rotate_image``)."""
    k = normalize_rotation(rotation) // 90
    return np.ascontiguousarray(np.rot90(image, -k)) if k else image
