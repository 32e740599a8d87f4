"""Pasting restored faces back: inverse warp, feathered mask, blend, colour match — and nothing else.

Restored crops much bigger than their faces' footprints in the frame (GPEN-2048 on a 1080p face) are first
shrunk by a power of two with block means (``shrink_factor``), so the colour match, the masks and the grain work
on as many pixels as the paste can use, and the warp resamples by less than 2 (no aliasing); the torch twin
shrinks the same way.

Only pixels under a mask change. Outside every mask the output is a copy of the input samples (not a
round trip through float), so the only change the rest of the frame sees is the final encode. Where
faces overlap, each pixel takes a mask-weighted mix of the faces covering it (weights m², so the
face more inside its own mask dominates, as GPEN's "larger mask wins" rule, without a hard seam).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from gpen_video.align.grain import grain_for_crops
from gpen_video.align.masks import feather_mask, parsing_masker
from gpen_video.config import ComposeConfig
from gpen_video.faces.geometry import invert_affine

MIN_ALPHA = 1.0 / 1024  # weights below this leave the pixel untouched
_SMALLEST_SHRUNK = 64  # crop side (px) the pre-paste shrink stops at


@dataclass
class AlignedBatch:
    """Aligned crops of one frame's faces and the transforms that cut them."""

    crops: np.ndarray  # (N, S, S, 3) the frame's dtype (uint8 or uint16)
    affines: np.ndarray  # (N, 2, 3) float64, frame -> crop
    frame_shape: tuple[int, int] | None = None  # (H, W) of the frame the crops were cut from


@dataclass(frozen=True)
class GrainSeed:
    """What makes one frame's grain (``compose.grain: match``): new every frame and face, the same every run."""

    frame_key: int  # the frame's source pts (the same frame gets the same grain in any run or segment)


@dataclass
class ComposeResult:
    image: np.ndarray  # same shape/dtype as the input image
    mask: np.ndarray  # (H, W) float32 in [0, 1]: weight of the restored faces (0 = bit-exact input)
    # frame boxes (x0, y0, x1, y1) of the pasted faces: ``mask`` is 0 outside them, so what looks for the pasted
    # pixels (the encoder's splice) need not read the whole frame; None: not known (the whole mask is looked at)
    regions: tuple[tuple[int, int, int, int], ...] | None = None


def compose(
    image: np.ndarray,
    restored: np.ndarray,
    batch: AlignedBatch,
    config: ComposeConfig,
    masks: np.ndarray | None = None,
    grain: GrainSeed | None = None,
    factors: Sequence[float] | None = None,
) -> ComposeResult:
    """Blend restored crops (N, S, S, 3 uint8 BGR) into ``image`` (H, W, 3 uint8/uint16) where the faces are.

    ``masks`` (N, S, S) float32 overrides the crop masks (else the feathered box, narrowed by the
    parsing model when ``config.parsing_model`` is set). An ``image`` larger than the frame the crops
    were cut from (background upscaled) gets the faces at its own resolution. With ``grain``, grain measured
    around each face in ``image`` (``align.grain``) is added to the face after its colour is matched.
    ``factors``: each face's factor on ``config.blend`` (the identity guard's), applied to its warped mask, so a
    face at 0 weighs nothing where faces overlap and leaves the source samples exactly; at 1 (or None) nothing
    is multiplied.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected an (H, W, 3) uint8/uint16 frame, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    top = 65535.0 if image.dtype == np.uint16 else 255.0
    if len(batch.affines) == 0:
        return ComposeResult(image.copy(), np.zeros((height, width), np.float32), ())
    size = restored.shape[1]
    affines = _affines_for(image, batch, size)
    crops = batch.crops
    shrink = shrink_factor(affines, size)
    # masks given or parsed are made for the full crops; a feathered box is made at the size it is used at
    full_masks = shrink == 1 or masks is not None or bool(config.parsing_model)
    crop_masks = _crop_masks(restored, config, masks, size) if full_masks else None
    if shrink > 1:  # crops far bigger than their faces' footprints: matched, masked and grained at a fraction
        size //= shrink
        restored, crops = shrunk(restored, shrink), shrunk(crops, shrink) if config.color_match else crops
        crop_masks = shrunk(crop_masks, shrink) if crop_masks is not None else _crop_masks(restored, config, None, size)
        affines = shrunk_affines(affines, shrink)
    if crop_masks.strides[0] == 0:  # one feathered mask for every face (``_crop_masks``): its support once
        inner = [mask_support(crop_masks[0])] * len(crop_masks)
    else:
        inner = [mask_support(m) for m in crop_masks]
    faces = _faces_to_paste(image, restored, crops, crop_masks, inner, affines, config, grain, top)
    pieces = _warp_to_regions(faces, crop_masks, inner, affines, (width, height), factors)
    return _paste_groups(image, pieces, config.blend, top)


def mask_support(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1, crop px) of a crop mask's nonzero samples grown by one sample each side (what a
    bilinear warp reads for any frame pixel the mask reaches), clipped to the crop; None: an empty mask. Nothing
    outside it is pasted, so the colour match, the warps and the blend work on it alone (a feathered mask's: about
    two thirds of the crop) and give the same samples as over the whole crop."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    side_y, side_x = mask.shape
    return max(cols[0] - 1, 0), max(rows[0] - 1, 0), min(cols[-1] + 2, side_x), min(rows[-1] + 2, side_y)


def shrink_factor(affines: np.ndarray, size: int) -> int:
    """How many times smaller (a power of two) the restored crops of one frame are made before they are pasted:
    as many as keep every face's crop at least as big as its footprint in the frame, so the paste's warp still
    shrinks (by less than 2) and never enlarges. A 2048-px crop of a face whose crop covers 300 frame px: 4 (colour
    match, masks and grain then work on 512 px, 16 times fewer, and the warp no longer skips source pixels)."""
    if len(affines) == 0:
        return 1
    # crop px per frame px of the face the crop is least shrunk for
    scale = float(np.sqrt(np.abs(np.linalg.det(np.asarray(affines, np.float64)[:, :, :2]))).min())
    factor = 1
    while 2 * factor <= scale and size % (2 * factor) == 0 and size // (2 * factor) >= _SMALLEST_SHRUNK:
        factor *= 2
    return factor


def shrunk(crops: np.ndarray, factor: int) -> np.ndarray:
    """(N, S, S[, C]) crops or masks as float32 means of ``factor``×``factor`` blocks, (N, S/factor, S/factor[, C])."""
    n, side = crops.shape[:2]
    out = np.empty((n, side // factor, side // factor, *crops.shape[3:]), np.float32)
    for k in range(n):
        crop = crops[k] if crops.dtype == np.float32 else cv2.add(crops[k], 0.0, dtype=cv2.CV_32F)  # OpenCV's threads
        out[k] = cv2.resize(crop, out.shape[1:3][::-1], interpolation=cv2.INTER_AREA)
    return out


def shrunk_affines(affines: np.ndarray, factor: int) -> np.ndarray:
    """Frame→crop transforms for crops ``factor`` times smaller by block means: crop pixel centre p becomes
    (p + 0.5) / factor - 0.5."""
    out = np.asarray(affines, np.float64) / factor
    out[:, :, 2] += 0.5 / factor - 0.5
    return out


def _faces_to_paste(
    image: np.ndarray,
    restored: np.ndarray,
    crops: np.ndarray,
    crop_masks: np.ndarray,
    inner: list[tuple[int, int, int, int] | None],
    affines: np.ndarray,
    config: ComposeConfig,
    grain: GrainSeed | None,
    top: float,
) -> list[np.ndarray | None]:
    """The restored crops in the frame's range (float32), colour-matched and grained as configured, over each
    mask's support (``inner``; None where the mask is empty). The colour statistics come from the whole crop."""
    if grain is not None:  # grain is made for whole crops
        whole = [(0, 0, restored.shape[2], restored.shape[1])] * len(restored)
        faces = np.stack(_matched(restored, crops, crop_masks, whole, config, top))  # type: ignore[arg-type]
        film = grain_for_crops(image, affines, restored.shape[1], grain.frame_key, restored=faces * (255 / top))
        faces = np.clip(faces + film * (top / 255.0), 0.0, top)
        return [None if box is None else faces[k, box[1] : box[3], box[0] : box[2]] for k, box in enumerate(inner)]
    return _matched(restored, crops, crop_masks, inner, config, top)


def _matched(
    restored: np.ndarray,
    crops: np.ndarray,
    crop_masks: np.ndarray,
    boxes: list[tuple[int, int, int, int] | None],
    config: ComposeConfig,
    top: float,
) -> list[np.ndarray | None]:
    """Each restored crop over its box (None: none), float32 0..top, its colour matched to its source crop."""
    out: list[np.ndarray | None] = []
    for face, crop, mask, box in zip(restored, crops, crop_masks, boxes, strict=True):
        if box is None:
            out.append(None)
            continue
        part = face[box[1] : box[3], box[0] : box[2]]
        shift = colour_shift(face, crop, mask, top) if config.color_match else None
        out.append(shifted_colour(part, shift, top))
    return out


def _warp_to_regions(
    faces: list[np.ndarray | None],
    crop_masks: np.ndarray,
    inner: list[tuple[int, int, int, int] | None],
    affines: np.ndarray,
    frame: tuple[int, int],
    factors: Sequence[float] | None = None,
) -> list[tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]]:
    """(region, warped face, warped mask) of each face that lands in the frame, warped from its mask's support
    (``inner``, where ``faces`` hold it) over the frame region it covers only; each mask times its face's factor
    (where one is given and is not 1)."""
    pieces = []
    factors = factors if factors is not None else [1.0] * len(faces)
    for face, crop_mask, box, affine, factor in zip(faces, crop_masks, inner, affines, factors, strict=True):
        if face is None or box is None:
            continue
        cx0, cy0, cx1, cy1 = box
        to_frame = invert_affine(affine)
        to_frame[:, 2] += to_frame[:, :2] @ (cx0, cy0)  # from the support's corner
        region = footprint(to_frame, (cx1 - cx0, cy1 - cy0), *frame)
        if region is None:
            continue
        rx0, ry0, rx1, ry1 = region
        to_frame[:, 2] -= (rx0, ry0)
        dsize = (rx1 - rx0, ry1 - ry0)
        warped = cv2.warpAffine(face, to_frame, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        support = crop_mask[cy0:cy1, cx0:cx1]
        m = cv2.warpAffine(support, to_frame, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        np.clip(m, 0.0, 1.0, out=m)
        if factor != 1.0:
            m *= np.float32(factor)
        pieces.append((region, warped, m))
    return pieces


def _paste_groups(
    image: np.ndarray,
    pieces: list[tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]],
    blend: float,
    top: float,
) -> ComposeResult:
    """Blend each face into a copy of ``image`` over its own region; where regions overlap, the faces' weighted mean
    over the overlap (``_mix_overlapping``). Every blend starts from ``image``'s samples, so the overlaps simply
    blend again over what their faces left there: a 4K two-shot's faces share a tenth of their pixels, where
    blending the box around both cost half as much again."""
    out = image.copy()
    full_mask = np.zeros(image.shape[:2], np.float32)
    blend = float(np.clip(blend, 0.0, 1.0))
    for piece in pieces:
        _blend_into(out, full_mask, image, *piece, blend)
    for rect in _overlaps([piece[0] for piece in pieces]):
        shared = [(piece, _intersection(piece[0], rect)) for piece in pieces]
        covering = [_within(piece, part) for piece, part in shared if part is not None]
        _blend_into(out, full_mask, image, rect, *_mix_overlapping(covering, rect), blend)
    return ComposeResult(out, full_mask, tuple(piece[0] for piece in pieces))


def _blend_into(
    out: np.ndarray,
    full_mask: np.ndarray,
    image: np.ndarray,
    region: tuple[int, int, int, int],
    pasted: np.ndarray,
    coverage: np.ndarray,
    blend: float,
) -> None:
    """``pasted`` blended over ``region`` of ``image`` into ``out`` (and its alpha into ``full_mask``): from the frame's
    own samples, so a pixel blended twice with the same face comes out the same. A few rows at a time
    (``_BLEND_PIXELS``): the blend's float copies of a band stay in the core's cache."""
    x0, y0, x1, y1 = region
    rows = max(1, _BLEND_PIXELS // (x1 - x0))
    for start in range(0, y1 - y0, rows):
        band, frame_rows = slice(start, start + rows), slice(y0 + start, min(y0 + start + rows, y1))
        out[frame_rows, x0:x1], full_mask[frame_rows, x0:x1] = _blend(
            image[frame_rows, x0:x1], pasted[band], coverage[band], blend
        )


def _intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """The rectangle ``a`` and ``b`` share, None where they share no pixel."""
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _overlaps(regions: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Where two of ``regions`` overlap: the rectangle each overlapping pair shares (these may overlap in turn)."""
    shared = (_intersection(a, b) for i, a in enumerate(regions) for b in regions[i + 1 :])
    return [rect for rect in shared if rect is not None]


def _within(
    piece: tuple[tuple[int, int, int, int], np.ndarray, np.ndarray], rect: tuple[int, int, int, int]
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """``piece`` (region, warped face, mask) cut to ``rect``, a rectangle inside its region."""
    (x0, y0, _, _), warped, m = piece
    part = (slice(rect[1] - y0, rect[3] - y0), slice(rect[0] - x0, rect[2] - x0))
    return rect, warped[part], m[part]


#: pixels a blend works on at a time: a band's float copies (~300 KB) stay in a core's L2 cache, where one pass
#: over a whole 4K face region (1600² px) streamed each through memory: 33 -> 20 CPU ms, the same samples
_BLEND_PIXELS = 24576
#: ``cv2.blendLinear`` gives (a·w1 + b·w2) / (w1 + w2 + 1e-5): weights this large make its 1e-5 a relative 1e-11
#: for the blend's 1 and 1e-5 for the weight of the faintest face that counts (a mask of 1/1024 squared)
_BLEND_SCALE = 1e6


def _blend(
    samples: np.ndarray, pasted: np.ndarray, coverage: np.ndarray, blend: float
) -> tuple[np.ndarray, np.ndarray]:
    """One box blended: (samples + alpha · (pasted - samples), rounded to the samples' type; alpha = coverage ·
    blend, 0 below 1/1024). One fused OpenCV pass; where alpha is 0 the samples come back exactly."""
    alpha = np.multiply(coverage, np.float32(blend))
    alpha[alpha < MIN_ALPHA] = 0.0
    weight = alpha * np.float32(_BLEND_SCALE)
    source = cv2.add(samples, 0.0, dtype=cv2.CV_32F)
    mixed = cv2.blendLinear(pasted, source, weight, np.float32(_BLEND_SCALE) - weight)
    depth = cv2.CV_16U if samples.dtype == np.uint16 else cv2.CV_8U
    return cv2.add(mixed, 0.0, dtype=depth), alpha  # rounded to nearest (half to even, as np.rint) and clipped


def _mix_overlapping(
    pieces: list[tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]], box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Faces sharing pixels: each pixel takes the m²-weighted mean of the faces covering it, face by face in
    order (``cv2.blendLinear`` of the mean so far, at its summed weight, and the next face, as the torch twin sums)."""
    x0, y0, x1, y1 = box
    weight_sum = np.zeros((y1 - y0, x1 - x0), np.float32)
    face_mean = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    coverage = np.zeros((y1 - y0, x1 - x0), np.float32)
    for (rx0, ry0, rx1, ry1), warped, m in pieces:
        sl = (slice(ry0 - y0, ry1 - y0), slice(rx0 - x0, rx1 - x0))
        weight = m * m
        weight *= np.float32(_BLEND_SCALE)
        face_mean[sl] = cv2.blendLinear(face_mean[sl], warped, weight_sum[sl], weight)
        weight_sum[sl] += weight
        np.maximum(coverage[sl], m, out=coverage[sl])
    return face_mean, coverage


#: full-range BT.601 luma and colour differences (rows Y, Cb, Cr) of BGR samples (columns B, G, R): the opponent
#: space the colour match moves each face's mean and spread in. It is linear, so the whole match is one 3×4 affine
#: of the face's BGR samples: one ``cv2.transform`` pass where a Lab match needed two conversions through OpenCV's
#: 33³ table (47 % of compose's CPU at 1080p), and in Lab ΔE to the source it is as close
#: (``bench/colour_match_bench.py``)
OPPONENT = np.array([[0.114, 0.587, 0.299], [0.5, -0.331264, -0.168736], [-0.081312, -0.418688, 0.5]])
FROM_OPPONENT = np.linalg.inv(OPPONENT)  # Y, Cb, Cr back to B, G, R
MATCH_GAIN = (0.5, 2.0)  # the spread is matched within these factors (a flat or noisy crop never blows it up)
FLAT_SPREAD = 1e-3  # a spread below this (in 0..1 units) counts as this


def match_colour(face: np.ndarray, source: np.ndarray, mask: np.ndarray, top: float) -> np.ndarray:
    """``face`` (a restored crop, 0..255: uint8 or float) with its colour mean and spread moved to those of
    ``source`` under ``mask``, as float32 0..top (``colour_shift``, then ``shifted_colour``)."""
    return shifted_colour(face, colour_shift(face, source, mask, top), top)


def colour_shift(face: np.ndarray, source: np.ndarray, mask: np.ndarray, top: float) -> np.ndarray | None:
    """The (3, 4) affine of ``face``'s BGR samples (a restored crop, 0..255) that moves their mean and spread in
    each ``OPPONENT`` channel under ``mask`` to ``source``'s (0..top), giving 0..top; None where the mask holds too
    little to measure.

    Stops the restorer's small colour shifts from drifting the face's tone from frame to frame. The
    statistics come from a ~128-pixel subsample (they need no more).
    """
    step = max(1, face.shape[0] // 128)
    sub = (slice(None, None, step), slice(None, None, step))
    sub_mask = (mask[sub] > 0.5).astype(np.uint8)  # the subsample of the pixels inside the mask
    if sub_mask.sum() < 16:
        return None
    f_mean, f_std = cv2.meanStdDev(cv2.transform(_unit(face[sub]), OPPONENT), mask=sub_mask)
    source_unit = np.multiply(source[sub], np.float32(1.0 / top), dtype=np.float32)
    s_mean, s_std = cv2.meanStdDev(cv2.transform(source_unit, OPPONENT), mask=sub_mask)
    gain = np.clip(s_std.ravel() / np.maximum(f_std.ravel(), FLAT_SPREAD), *MATCH_GAIN)
    return opponent_shift(gain, f_mean.ravel(), s_mean.ravel(), top)


def opponent_shift(gain: np.ndarray, face_mean: np.ndarray, source_mean: np.ndarray, top: float) -> np.ndarray:
    """The (3, 4) BGR affine (0..255 in, 0..top out) of ``(o - face_mean) * gain + source_mean`` in ``OPPONENT``
    channels ``o`` (means of 0..1 samples)."""
    shift = np.empty((3, 4), np.float64)
    shift[:, :3] = FROM_OPPONENT @ (gain[:, None] * OPPONENT) * (top / 255.0)
    shift[:, 3] = FROM_OPPONENT @ (source_mean - gain * face_mean) * top
    return shift


def shifted_colour(face: np.ndarray, shift: np.ndarray | None, top: float) -> np.ndarray:
    """``face`` (0..255) as float32 0..top with ``colour_shift``'s affine (None: none), clipped to 0..top."""
    samples = np.asarray(face, np.float32)
    if face.dtype != np.uint8:
        samples = np.clip(samples, 0.0, 255.0)
    if shift is None:
        return np.multiply(samples, np.float32(top / 255.0), dtype=np.float32)
    out = cv2.transform(samples, shift)
    return np.clip(out, 0.0, top, out=out)


def _unit(face: np.ndarray) -> np.ndarray:
    """A restored crop (0..255: a restorer's uint8, or float) as a new float32 array in 0..1."""
    unit = np.multiply(face, np.float32(1.0 / 255.0), dtype=np.float32)
    return unit if face.dtype == np.uint8 else np.clip(unit, 0.0, 1.0, out=unit)


def _crop_masks(restored: np.ndarray, config: ComposeConfig, masks: np.ndarray | None, size: int) -> np.ndarray:
    if masks is not None:
        return np.asarray(masks, np.float32)
    base = feather_mask(size, config.mask_erode, config.mask_blur)
    out = np.broadcast_to(base, (len(restored), size, size))  # one mask for every face, read only
    if config.parsing_model:
        out = np.minimum(out, parsing_masker(str(config.parsing_model)).masks(restored))
    return out


def _affines_for(image: np.ndarray, batch: AlignedBatch, size: int) -> np.ndarray:
    """Frame→crop transforms for this image: rescaled for an upscaled background and a resized crop."""
    affines = np.asarray(batch.affines, np.float64).copy()
    crop_size = batch.crops.shape[1] if batch.crops.size else size
    if crop_size != size:  # restorer returned another size: scale the crop side of the transform
        affines *= size / crop_size
    if batch.frame_shape is not None and tuple(image.shape[:2]) != tuple(batch.frame_shape):
        factor = image.shape[0] / batch.frame_shape[0]
        # frame pixel p = (p_up + 0.5) / factor - 0.5 (pixel centres)
        linear = affines[:, :, :2] / factor
        affines[:, :, 2] += affines[:, :, :2] @ np.array([0.5 / factor - 0.5] * 2)
        affines[:, :, :2] = linear
    return affines


def footprint(
    to_frame: np.ndarray, size: int | tuple[int, int], width: int, height: int
) -> tuple[int, int, int, int] | None:
    """Integer frame rectangle covering the inverse warp of a crop of side ``size`` (or (width, height)), clipped to
    the frame; None if outside."""
    across, down = (size, size) if isinstance(size, int) else size
    corners = np.array([[0, 0, 1], [across, 0, 1], [0, down, 1], [across, down, 1]], np.float64)
    pts = corners @ to_frame.T
    x0 = max(int(np.floor(pts[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(pts[:, 1].max())) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1
