"""Warping faces out of frames: OpenCV on the CPU, ``grid_sample`` on a torch device, same pixels.

Both sample the frame bilinearly at the same source positions (OpenCV 5 evaluates ``warpAffine``
coordinates in floating point; ``grid_sample`` with ``align_corners=True`` puts pixel centres on the
same grid), with edges replicated, so the two differ only by the rounding of the weights: at most one
level. That lets tests check the device path against the CPU one, and lets the pipeline switch
between them without the crops (and so the restored faces) changing.
"""

from __future__ import annotations

import cv2
import numpy as np

from gpen_video.faces.geometry import invert_affine


def warp_cpu(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """The size×size crop that ``affine`` (2×3, frame→crop) cuts from ``image``; edges replicated."""
    return cv2.warpAffine(
        image, np.asarray(affine, np.float64), (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def source_terms(affine: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Separable parts of the source coordinates of a size×size crop: ``src[k] = rows[k][r] + cols[k][c]``.

    Each is (2, size) float64 (k = 0 for x, 1 for y); a full grid is their outer sum, built on the device.
    """
    inverse = invert_affine(affine)  # crop -> frame, what warpAffine evaluates per output pixel
    coords = np.arange(size, dtype=np.float64)
    cols = inverse[:, 0:1] * coords[None, :]
    rows = inverse[:, 1:2] * coords[None, :] + inverse[:, 2:3]
    return rows, cols


def warp_torch(frame, affines: np.ndarray, size: int):
    """Batched crops from one frame on its device: ``frame`` (H, W, C) tensor, ``affines`` (N, 2, 3) frame→crop.

    Returns an (N, size, size, C) tensor of the frame's dtype (uint8/uint16 rounded like OpenCV; floats as is).
    """
    import torch

    height, width, channels = frame.shape
    device = frame.device
    affines = np.asarray(affines, np.float64).reshape(-1, 2, 3)
    n = len(affines)
    if n == 0:
        return torch.zeros((0, size, size, channels), dtype=frame.dtype, device=device)
    rows, cols = zip(*(source_terms(a, size) for a in affines), strict=True)
    row_t = torch.as_tensor(np.stack(rows), dtype=torch.float64, device=device)  # (N, 2, S)
    col_t = torch.as_tensor(np.stack(cols), dtype=torch.float64, device=device)
    src = row_t[:, :, :, None] + col_t[:, :, None, :]  # (N, 2, S, S) frame pixel coordinates
    norm = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=torch.float64, device=device)
    grid = (src * norm[None, :, None, None] - 1.0).permute(0, 2, 3, 1).to(torch.float32).contiguous()
    source = frame.permute(2, 0, 1).unsqueeze(0).to(torch.float32).expand(n, -1, -1, -1)
    out = torch.nn.functional.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)
    out = out.permute(0, 2, 3, 1)
    if frame.dtype in (torch.uint8, torch.int16, torch.int32) or str(frame.dtype) == "torch.uint16":
        top = 255.0 if frame.dtype == torch.uint8 else 65535.0
        out = out.round().clamp_(0.0, top)
        if str(frame.dtype) == "torch.uint16":
            return out.to(torch.int32).to(frame.dtype)
    return out.to(frame.dtype)
