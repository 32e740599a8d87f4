"""The GPU twin of ``compose``: paste restored faces back with torch, so a frame can stay on its device.

Same semantics as :func:`gpen_video.align.compose.compose` (feathered crop mask, inverse warp of each
face only over its footprint, m²-weighted mix where faces overlap, ``alpha = coverage * blend``, pixels
with alpha below 1/1024 untouched, half-to-even rounding, optional colour match: one affine of each face's
samples), computed with ``grid_sample`` instead of ``cv2.warpAffine``. The CPU code stays the reference; this
one is tested against it (a couple of levels at most, bit-exact outside the mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from gpen_video.align.compose import (
    FLAT_SPREAD,
    FROM_OPPONENT,
    MATCH_GAIN,
    MIN_ALPHA,
    OPPONENT,
    footprint,
    shrink_factor,
    shrunk_affines,
)
from gpen_video.align.masks import feather_mask, parsing_masker
from gpen_video.config import ComposeConfig
from gpen_video.faces.geometry import invert_affine


def compose_torch(
    image: torch.Tensor,
    restored: torch.Tensor,
    affines: torch.Tensor | np.ndarray,
    config: ComposeConfig,
    crops: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    factors: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int] | None]:
    """image: (H, W, 3) uint8 or uint16 (int32-safe) BGR tensor on any device; restored: (N, S, S, 3) uint8 BGR tensor;
    affines: (N, 2, 3) frame->crop; crops: the aligned source crops (N, S, S, 3), frame dtype, for colour matching.
    Returns (composed image, same dtype/shape/device; mask (H, W) float32 in [0,1]; the box (x0, y0, x1, y1) outside
    which the mask is 0, None where nothing was pasted); pixels where mask == 0 are bit-identical to the input.

    An int32 frame is taken as 16-bit samples (0..65535), as ``warp_torch`` does. ``masks`` (N, S, S) overrides the
    crop masks; with ``config.parsing_model`` set (and no ``masks``) the parsing model runs on the CPU (a download of
    the restored crops). ``affines`` are for this image (rescaled by the caller for an upscaled background); a
    ``crops`` side other than S scales them, as ``compose`` does. ``factors``: each face's on the blend, as ``compose``.
    """
    if image.ndim != 3 or image.shape[2] != 3 or not _is_integer_frame(image.dtype):
        raise ValueError(f"expected an (H, W, 3) uint8/uint16 frame tensor, got {tuple(image.shape)} {image.dtype}")
    height, width = int(image.shape[0]), int(image.shape[1])
    top = 255.0 if image.dtype == torch.uint8 else 65535.0
    if isinstance(affines, torch.Tensor):
        affines = affines.detach().to("cpu", torch.float64).numpy()
    affines = np.asarray(affines, np.float64).reshape(-1, 2, 3).copy()
    empty_mask = torch.zeros((height, width), dtype=torch.float32, device=image.device)
    if len(affines) == 0:
        return image.clone(), empty_mask, None
    size = _checked_size(restored, crops, len(affines), config)
    if crops is not None and crops.numel() and int(crops.shape[1]) != size:
        affines *= size / int(crops.shape[1])  # restorer returned another size: scale the crop side
    shrink = shrink_factor(affines, size)
    if shrink > 1:  # as ``compose``: block means, masks given or parsed made for the full crops
        if masks is None and config.parsing_model:
            masks = _crop_masks(restored, config, None, size, image.device)
        restored = _shrunk(restored, shrink)
        crops = None if crops is None else _shrunk(crops, shrink)
        masks = None if masks is None else _shrunk(torch.as_tensor(masks)[..., None], shrink)[..., 0]
        affines, size = shrunk_affines(affines, shrink), size // shrink
    regions = [footprint(invert_affine(a), size, width, height) for a in affines]
    used = [k for k, r in enumerate(regions) if r is not None]
    if not used:
        return image.clone(), empty_mask, None
    crop_masks = _crop_masks(restored, config, masks, size, image.device)
    faces, crop_masks, scale = _faces_to_paste(restored, crops, crop_masks, used, config, top, image.device)
    boxes = [regions[k] for k in used]
    lowered = None if factors is None else [float(factors[k]) for k in used]
    warped, warped_mask = _warp_to_regions(faces, crop_masks, affines[used], boxes, lowered)
    if scale != 1.0:
        warped = warped * scale
    box = min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)
    pasted, coverage = _mix_overlapping(warped, warped_mask, boxes, box)
    x0, y0, x1, y1 = box
    mixed, alpha = _blend(image[y0:y1, x0:x1], pasted, coverage, config.blend, top)
    out = image.clone()
    out[y0:y1, x0:x1] = mixed
    full_mask = empty_mask
    full_mask[y0:y1, x0:x1] = alpha
    return out, full_mask, box


def _shrunk(crops: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, S, S, C) as float32 means of ``factor``×``factor`` blocks (``compose.shrunk``)."""
    pooled = F.avg_pool2d(crops.to(torch.float32).permute(0, 3, 1, 2), factor)
    return pooled.permute(0, 2, 3, 1).contiguous()


def _checked_size(restored: torch.Tensor, crops: torch.Tensor | None, n: int, config: ComposeConfig) -> int:
    """The restored crops' side S, once they are (n, S, S, 3) and, for colour matching, the source crops S too."""
    if restored.ndim != 4 or restored.shape[0] != n or restored.shape[1] != restored.shape[2]:
        raise ValueError(f"expected restored crops ({n}, S, S, 3), got {tuple(restored.shape)}")
    size = int(restored.shape[1])
    if config.color_match:
        if crops is None:
            raise ValueError("color_match needs the aligned source crops (crops=...)")
        if int(crops.shape[1]) != size:
            raise ValueError(f"colour matching needs crops of the restored size {size}, got {int(crops.shape[1])}")
    return size


def _faces_to_paste(
    restored: torch.Tensor,
    crops: torch.Tensor | None,
    crop_masks: torch.Tensor,
    used: list[int],
    config: ComposeConfig,
    top: float,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The faces that land in the frame (float32, colour-matched as configured), their masks, and the scale to
    the frame's range still owed: applied after the warp (fewer pixels), unless matching needed it first.
    """
    faces = restored.to(device=device)
    if len(used) < len(restored):  # faces with no footprint in the frame are neither matched nor warped
        faces, crop_masks = faces[used], crop_masks[used]
        crops = None if crops is None else crops[used]
    faces = faces.to(torch.float32)
    scale = top / 255.0  # 8-bit faces to the frame's range
    if config.color_match:
        faces = match_colour_torch(faces * scale, crops.to(device), crop_masks, top)
        scale = 1.0
    return faces, crop_masks, scale


def _mix_overlapping(
    warped: torch.Tensor,
    warped_mask: torch.Tensor,
    regions: list[tuple[int, int, int, int]],
    box: tuple[int, int, int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The faces over one box: each pixel takes the m²-weighted mean of the faces covering it; and their coverage."""
    x0, y0, x1, y1 = box
    device = warped.device
    weight_sum = torch.zeros((y1 - y0, x1 - x0), dtype=torch.float32, device=device)
    face_sum = torch.zeros((y1 - y0, x1 - x0, 3), dtype=torch.float32, device=device)
    coverage = torch.zeros((y1 - y0, x1 - x0), dtype=torch.float32, device=device)
    for j, (rx0, ry0, rx1, ry1) in enumerate(regions):  # in face order, as the CPU code sums, so the float sums agree
        h, w = ry1 - ry0, rx1 - rx0
        m = warped_mask[j, :h, :w]
        sl = (slice(ry0 - y0, ry1 - y0), slice(rx0 - x0, rx1 - x0))
        m2 = m * m
        weight_sum[sl] += m2
        face_sum[sl] += m2[..., None] * warped[j, :h, :w]
        coverage[sl] = torch.maximum(coverage[sl], m)
    return face_sum / weight_sum.clamp_min(1e-12)[..., None], coverage


def _blend(
    samples: torch.Tensor, pasted: torch.Tensor, coverage: torch.Tensor, blend: float, top: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One box blended: (samples, the input's exactly where alpha is 0; alpha = coverage * blend, 0 below 1/1024)."""
    alpha = coverage * float(np.clip(blend, 0.0, 1.0))
    alpha = torch.where(alpha < MIN_ALPHA, torch.zeros_like(alpha), alpha)
    changed = alpha > 0
    source_f = samples.to(torch.float32)
    mixed = source_f + alpha[..., None] * (pasted - source_f)
    mixed = torch.round(mixed).clamp_(0.0, top)
    region = torch.where(changed[..., None], mixed.to(torch.int32), samples.to(torch.int32))
    return region.to(samples.dtype), alpha


def match_colour_torch(faces: torch.Tensor, sources: torch.Tensor, masks: torch.Tensor, top: float) -> torch.Tensor:
    """Batched ``match_colour``: each face's mean and spread in the ``OPPONENT`` channels moved to its source crop's
    under its mask, one 3×4 affine of its BGR samples.

    ``faces`` (N, S, S, 3) float 0..top, ``sources`` (N, S, S, 3) the frame's samples, ``masks`` (N, S, S).
    Statistics from the same ~128-pixel subsample as the CPU code, in float64 as ``cv2.meanStdDev`` sums; faces
    with too little mask are left as they are (decided on the device, so nothing waits for the host).
    """
    n, size = faces.shape[0], faces.shape[1]
    weight = masks > 0.5
    step = max(1, size // 128)
    sub_weight = weight[:, ::step, ::step]
    ok = (weight.sum(dim=(1, 2)) >= 16) & (sub_weight.sum(dim=(1, 2)) >= 16)
    unit = (faces / top).clamp(0.0, 1.0)
    opponent = torch.as_tensor(OPPONENT, dtype=torch.float64, device=faces.device)
    w = sub_weight.to(torch.float64)[..., None]
    count = w.sum(dim=(1, 2)).clamp_min(1.0)  # (N, 1)

    def stats(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = samples.to(torch.float64) @ opponent.t()  # float64: no TF32 on any device
        mean = (values * w).sum(dim=(1, 2)) / count
        var = (((values - mean[:, None, None]) ** 2) * w).sum(dim=(1, 2)) / count
        return mean, var.sqrt()

    f_mean, f_std = stats(unit[:, ::step, ::step])
    s_mean, s_std = stats(sources[:, ::step, ::step].to(torch.float64) / top)
    gain = (s_std / f_std.clamp_min(FLAT_SPREAD)).clamp(*MATCH_GAIN)  # (N, 3)
    back = torch.as_tensor(FROM_OPPONENT, dtype=torch.float64, device=faces.device)
    linear = (back @ (gain[:, :, None] * opponent) * top).to(torch.float32)  # (N, 3, 3): unit BGR in, 0..top out
    offset = ((s_mean - gain * f_mean) @ back.t() * top).to(torch.float32)  # (N, 3)
    matched = offset[:, None, None, :].expand_as(unit).clone()
    for channel in range(3):  # multiply-adds, not a matmul: the same float32 sums on any device
        matched += unit[..., channel : channel + 1] * linear[:, None, None, :, channel]
    matched.clamp_(0.0, top)
    return torch.where(ok.view(n, 1, 1, 1), matched, faces)


@lru_cache(maxsize=16)
def _feather_on(size: int, erode: float, blur: float, device: torch.device) -> torch.Tensor:
    """The feathered crop mask, built once on the CPU and kept on each device it is used on."""
    return torch.as_tensor(np.array(feather_mask(size, erode, blur)), dtype=torch.float32, device=device)


def _crop_masks(
    restored: torch.Tensor, config: ComposeConfig, masks: torch.Tensor | None, size: int, device: torch.device
) -> torch.Tensor:
    n = int(restored.shape[0])
    if masks is not None:
        return torch.as_tensor(masks, dtype=torch.float32).to(device)
    base = _feather_on(size, float(config.mask_erode), float(config.mask_blur), torch.device(device))
    out = base.expand(n, size, size)
    if config.parsing_model:  # the parsing model runs on the CPU (ONNX Runtime): one download of the crops
        parsed = parsing_masker(str(config.parsing_model)).masks(restored.detach().cpu().numpy())
        out = torch.minimum(out, torch.as_tensor(parsed, dtype=torch.float32, device=device))
    return out


def _warp_to_regions(
    faces: torch.Tensor,
    crop_masks: torch.Tensor,
    affines: np.ndarray,
    regions: list[tuple[int, int, int, int]],
    factors: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each face and its mask sampled over its own frame rectangle, batched on a common (max h, max w) grid.

    Frame pixel (x, y) takes the crop at ``affine @ (x, y, 1)``: what ``cv2.warpAffine`` evaluates for the
    inverse map. Pixel centres on integers (``align_corners=True``); the face's edges replicated (padding
    "border" clamps the coordinate, as ``BORDER_REPLICATE``), the mask's zero outside (``BORDER_CONSTANT``).
    Returns (N, h, w, 3) faces and (N, h, w) masks clipped to [0, 1], then times each face's factor (where one is
    given and is not 1: ``compose``'s order); each face's own rectangle is its top-left.
    """
    device = faces.device
    size = int(faces.shape[1])
    height = max(r[3] - r[1] for r in regions)
    width = max(r[2] - r[0] for r in regions)
    # on the host, in float64: each rectangle's origin and grid_sample's [-1, 1] scale folded into the affine,
    # so one small upload carries everything (no host<->device round trips per face)
    shifted = np.asarray(affines, np.float64).copy()
    origins = np.array([(r[0], r[1]) for r in regions], np.float64)  # (N, 2) top-left of each rectangle
    shifted[:, :, 2] += np.einsum("nij,nj->ni", shifted[:, :, :2], origins)
    shifted *= 2.0 / max(size - 1, 1)
    shifted[:, :, 2] -= 1.0
    a = torch.as_tensor(shifted, dtype=torch.float64).to(device)  # (N, 2, 3)
    xs = torch.arange(width, dtype=torch.float64, device=device)[None, None, :]
    ys = torch.arange(height, dtype=torch.float64, device=device)[None, :, None]
    coords = [a[:, k, 0, None, None] * xs + a[:, k, 1, None, None] * ys + a[:, k, 2, None, None] for k in (0, 1)]
    grid = torch.stack(coords, dim=-1).to(torch.float32)  # (N, h, w, 2)
    warped = F.grid_sample(
        faces.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border", align_corners=True
    ).permute(0, 2, 3, 1)
    mask = F.grid_sample(crop_masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0]
    mask = mask.clamp(0.0, 1.0)
    for j, factor in enumerate(factors or ()):
        if factor != 1.0:
            mask[j] *= factor
    return warped, mask


def _is_integer_frame(dtype: torch.dtype) -> bool:
    return dtype in (torch.uint8, torch.int32) or dtype == getattr(torch, "uint16", None)
