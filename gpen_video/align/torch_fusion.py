"""Fusion's merge on a torch device: the device path's twin of ``align.fusion``.

The registration stays on the host (the landmarks' similarity and OpenCV's DIS flow on small grey copies, a few
milliseconds per neighbour); what scales with the face's pixels runs on the device: each neighbour resampled
with ``grid_sample`` (bicubic, edges replicated, as ``cv2.remap`` with ``INTER_CUBIC``), the noise estimate, the
5×5 agreement, the weights and the merge. Only the part of each neighbour's frame the map reads goes up, and only
the fused region comes back. On a CPU device it is the tests' twin of the NumPy merge (within one level).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from gpen_video.align.fusion import (
    AGREE,
    DISAGREE,
    MEDIAN_CHI2,
    NOISE_FLOOR,
    PATCH,
    FaceView,
    FusedFace,
    Merged,
    Registration,
    border_ramp,
    fused_face,
    fusion_input,
    sample_top,
)

if TYPE_CHECKING:
    import torch


def fuse_face_torch(
    reference: FaceView, neighbours: Sequence[FaceView], strength: float, device: torch.device
) -> FusedFace:
    """``align.fusion.fuse_face`` with the resampling and the merge on ``device``."""
    import torch

    start = fusion_input(reference, neighbours, strength)
    box, own, found = start.box, start.own, start.found
    if not found:
        return start.unfused()
    with torch.no_grad():
        ref = _upload(own, device)
        samples, inside = zip(*(_resample(r, device) for r in found), strict=True)
        merged = merge_torch(ref, samples, inside, strength, sample_top(own.dtype))
    return fused_face(box, own, merged, len(found))


def _upload(samples: np.ndarray, device: torch.device) -> torch.Tensor:
    import torch

    host = samples.astype(np.int32) if samples.dtype == np.uint16 else samples
    return torch.as_tensor(np.ascontiguousarray(host)).to(device).float()


def _resample(registration: Registration, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The neighbour's samples at the map, (h, w, 3) float32 on ``device``, and where the map is inside its frame.
    Only the part of its frame the map reads (with the bicubic taps' reach) is uploaded."""
    import torch

    height, width = registration.image.shape[:2]
    map_x, map_y = registration.map_x, registration.map_y
    left = int(np.clip(np.floor(map_x.min()) - 2, 0, width - 1))
    right = int(np.clip(np.ceil(map_x.max()) + 3, left + 1, width))
    top = int(np.clip(np.floor(map_y.min()) - 2, 0, height - 1))
    bottom = int(np.clip(np.ceil(map_y.max()) + 3, top + 1, height))
    part = _upload(registration.image[top:bottom, left:right], device)  # (h', w', 3)
    grid_x = torch.as_tensor(map_x, device=device) - left
    grid_y = torch.as_tensor(map_y, device=device) - top
    # align_corners=True puts pixel centres on -1..1 as OpenCV's integer coordinates; clamping to the part's edge
    # is what BORDER_REPLICATE gives where the map leaves the frame (the part then ends at the frame's edge)
    grid = torch.stack([2 * grid_x / max(part.shape[1] - 1, 1) - 1, 2 * grid_y / max(part.shape[0] - 1, 1) - 1], -1)
    source = part.permute(2, 0, 1)[None]
    sample = torch.nn.functional.grid_sample(
        source, grid[None], mode="bicubic", padding_mode="border", align_corners=True
    )
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    # in the frame's levels, as OpenCV gives them: the cubic's overshoot at edges clipped, rounded
    levels = sample[0].permute(1, 2, 0).clamp(0.0, sample_top(registration.image.dtype)).round()
    return levels, torch.as_tensor(inside.astype(np.float32), device=device)


def merge_torch(
    ref: torch.Tensor,
    samples: Sequence[torch.Tensor],
    inside: Sequence[torch.Tensor],
    strength: float,
    top: float,
) -> Merged:
    """``align.fusion.merge`` on device tensors ((h, w, 3) float32); the fused samples come back to the host."""
    import torch

    pairs = zip(samples, inside, strict=True)
    squares = torch.cat([((s - ref)[::3, ::3] ** 2)[v[::3, ::3] > 0].reshape(-1) for s, v in pairs])
    floor = (NOISE_FLOOR * top / 255.0) ** 2
    sigma2 = max(float(torch.quantile(squares, 0.5)) / (2.0 * MEDIAN_CHI2), floor) if squares.numel() else floor
    ramp = torch.as_tensor(border_ramp(tuple(ref.shape[:2])), device=ref.device)
    total, weights, taken = ref.clone(), torch.ones(ref.shape[:2], device=ref.device), 0.0
    for sample, valid in zip(samples, inside, strict=True):
        weight = _agreement(ref, sample, sigma2) * valid * ramp
        total += sample * weight[..., None]
        weights += weight
        taken += float(weight.mean())
    fused = ref + strength * (total / weights[..., None] - ref)
    return Merged(fused.cpu().numpy(), taken / len(samples), float(weights.mean()))


def _agreement(ref: torch.Tensor, sample: torch.Tensor, sigma2: float) -> torch.Tensor:
    """``align.fusion._agreement``: the 5×5 patch mean (borders reflected without their edge, as OpenCV's
    ``BORDER_REFLECT_101``) of the squared difference, over what noise explains."""
    import torch

    squared = ((sample - ref) ** 2).mean(dim=2)[None, None]
    half = PATCH // 2
    padded = torch.nn.functional.pad(squared, (half, half, half, half), mode="reflect")
    patch = torch.nn.functional.avg_pool2d(padded, PATCH, stride=1)[0, 0]
    ratio = patch / (2.0 * sigma2)
    return ((DISAGREE - ratio) / (DISAGREE - AGREE)).clamp(0.0, 1.0)
