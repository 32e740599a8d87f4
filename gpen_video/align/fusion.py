"""Multi-frame fusion along a track: a face's neighbours brought into its frame and merged where they agree.

A video holds each face many times. For a face at frame t, each neighbour t±d (d ≤ R) of the same track is
brought into frame t's geometry in two steps:

- **rigid**: the similarity that takes the face's smoothed landmarks at t onto those at t±d (the same landmarks
  the crops are cut with, so fusion registers what the restorer will see);
- **non-rigid**: dense optical flow (OpenCV's DIS) from frame t's face region to the rigidly registered
  neighbour, on blurred grey copies at about ``FLOW_SCALE`` pixels of face scale, for what the similarity does
  not follow (mouth, eyes, expression, a turn of the head). DIS was chosen over tile-wise alignment because a
  face's non-rigid motion is smooth and local, and DIS gives a per-pixel field at a few milliseconds per face.

The two are composed into one sampling map, so each neighbour is interpolated once (bicubic).

The merge is per pixel: a neighbour's weight comes from how well it agrees with frame t over a 5×5 patch,
relative to the noise measured on that face (the median squared difference between frame t and its registered
neighbours). Where it agrees as two noisy copies of one picture do, it counts fully; where the difference is
well above what noise explains (occlusion, a blink, an opening mouth, a cut the detector missed, a wrong
registration), it counts for nothing, so frame t's own pixels stay: never a ghost or a smear. Weights fall to 0
at the region's border and where a neighbour's map leaves its frame.

Frame t's own samples are never resampled: with no neighbour accepted the result is frame t exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from gpen_video.faces.geometry import umeyama_similarity
from gpen_video.faces.types import face_box, face_scale

FLOW_SCALE = 40.0  # face scale (eye centre to mouth centre, px) the flow is measured at; smaller faces at their own
REGION_GROW = 1.25  # the fused region: the landmark face box grown by this much about its centre
PATCH = 5  # side of the patch a neighbour's agreement is judged over (px)
AGREE = 1.25  # patch difference over what noise explains, up to which a neighbour counts fully
DISAGREE = 3.0  # ... from which it counts for nothing
NOISE_FLOOR = 0.5  # levels (8-bit units): the least noise assumed, so a clean face does not divide by ~0
FIT_LIMIT = 0.08  # landmark residual of the rigid fit, in face scales, above which a neighbour is not used
BEND_LIMIT = 0.07  # median non-affine flow, in face scales, above which a neighbour is another picture (a missed cut)
FEATHER = 0.08  # of the region's short side: the border over which neighbours' weights ramp up from 0
MEDIAN_CHI2 = 0.4549  # the median of a chi-squared variable of one degree of freedom


@dataclass(frozen=True)
class FaceView:
    """One face of one frame: the frame's upright working image and the face's final landmarks there."""

    image: np.ndarray  # (H, W, 3) uint8 or uint16
    landmarks: np.ndarray  # (5, 2) frame pixels


@dataclass(frozen=True)
class FusedFace:
    """A face's fused region of frame t, and what fusion measured there."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in frame t
    patch: np.ndarray  # the fused samples of that box, the image's dtype
    neighbours: int  # neighbours registered (offered and fitted)
    accepted: float  # share of the neighbours' pixels taken (mean weight), 0..1
    weight_sum: float  # mean over the region of 1 + the neighbours' weights: frames in effect
    noise_before: float  # noise sigma of frame t's face region (levels of the image's dtype), measured
    noise_after: float  # ... of the fused region, measured the same way


def fusion_region(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The box of frame t fused for a face: its landmark face box grown by ``REGION_GROW``, inside the frame."""
    x0, y0, x1, y1 = face_box(landmarks)
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    hw, hh = 0.5 * (x1 - x0) * REGION_GROW, 0.5 * (y1 - y0) * REGION_GROW
    height, width = shape[:2]
    left, top = max(int(np.floor(cx - hw)), 0), max(int(np.floor(cy - hh)), 0)
    right, bottom = min(int(np.ceil(cx + hw)), width), min(int(np.ceil(cy + hh)), height)
    return left, top, max(right, left), max(bottom, top)


def spatial_noise(samples: np.ndarray) -> float:
    """Immerkær's fast noise estimate (sigma, the samples' levels) of an (h, w, 3) region: the mean absolute
    response of a Laplacian-difference kernel that cancels smooth image structure, averaged over channels."""
    if min(samples.shape[:2]) < 3:
        return 0.0
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = cv2.filter2D(samples.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2.0) / 6.0 * np.mean(np.abs(response)))


@dataclass(frozen=True)
class Registration:
    """Where each pixel of frame t's fused region is read in one neighbour's frame (``map_x``, ``map_y``: (h, w)
    float32, that frame's pixels): the landmarks' similarity composed with the residual flow."""

    image: np.ndarray  # the neighbour's frame
    map_x: np.ndarray
    map_y: np.ndarray

    def inside(self) -> np.ndarray:
        """(h, w) float32: 1 where the map reads inside the neighbour's frame."""
        height, width = self.image.shape[:2]
        x, y = self.map_x, self.map_y
        return ((x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)).astype(np.float32)


def registrations(
    reference: FaceView, neighbours: Sequence[FaceView], box: tuple[int, int, int, int]
) -> list[Registration]:
    """The neighbours that can be brought into frame t's ``box``, registered (the host part of fusion, shared by
    the NumPy and torch merges): a similarity must take their landmarks onto frame t's (``_fits``), and the flow
    must not bend the region (``BEND_LIMIT``)."""
    found = (_register(reference, v, box) for v in neighbours if _fits(reference.landmarks, v.landmarks))
    return [r for r in found if r is not None]


@dataclass(frozen=True)
class FusionInput:
    """What both merges start from: frame t's fused region, its samples, and the neighbours registered to it."""

    box: tuple[int, int, int, int]
    own: np.ndarray
    found: list[Registration]

    def unfused(self) -> FusedFace:
        """The region as it is (no neighbour could be used, or strength 0)."""
        noise = spatial_noise(self.own)
        return FusedFace(self.box, self.own.copy(), 0, 0.0, 1.0, noise, noise)


def fusion_input(reference: FaceView, neighbours: Sequence[FaceView], strength: float) -> FusionInput:
    box = fusion_region(reference.landmarks, reference.image.shape)
    x0, y0, x1, y1 = box
    own = reference.image[y0:y1, x0:x1]
    return FusionInput(box, own, registrations(reference, neighbours, box) if own.size and strength > 0 else [])


def fuse_face(reference: FaceView, neighbours: Sequence[FaceView], strength: float = 1.0) -> FusedFace:
    """``reference``'s face region with ``neighbours`` (the same track's faces in nearby frames of the same shot)
    merged in where they agree with it; ``strength`` 0..1: how far the merge replaces the reference's own."""
    start = fusion_input(reference, neighbours, strength)
    box, own, found = start.box, start.own, start.found
    if not found:
        return start.unfused()
    samples = [
        cv2.remap(r.image, r.map_x, r.map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        for r in found
    ]
    merged = merge(own.astype(np.float32), samples, [r.inside() for r in found], strength, sample_top(own.dtype))
    return fused_face(box, own, merged, len(found))


@dataclass(frozen=True)
class Merged:
    """What a merge gives: the fused samples (float, not rounded), and the share of the neighbours' pixels taken
    and the mean weight sum."""

    samples: np.ndarray
    accepted: float
    weight_sum: float


def merge(
    ref: np.ndarray, samples: Sequence[np.ndarray], inside: Sequence[np.ndarray], strength: float, top: float
) -> Merged:
    """Frame t's region ``ref`` (h, w, 3) float32 with the registered neighbours' ``samples`` averaged in, each pixel
    weighted by its agreement (``_agreement``) where it lies ``inside`` its frame, less near the region's border."""
    sigma2 = _temporal_noise2(ref, samples, inside, top)
    ramp = border_ramp(ref.shape[:2])
    total = ref.copy()
    weights = np.ones(ref.shape[:2], np.float32)
    taken = 0.0
    for sample, valid in zip(samples, inside, strict=True):
        weight = _agreement(ref, sample, sigma2) * valid * ramp
        total += sample * weight[..., None]
        weights += weight
        taken += float(weight.mean())
    fused = ref + np.float32(strength) * (total / weights[..., None] - ref)
    return Merged(fused, taken / len(samples), float(weights.mean()))


def fused_face(box: tuple[int, int, int, int], own: np.ndarray, merged: Merged, neighbours: int) -> FusedFace:
    """The ``FusedFace`` of a merge: its samples rounded to ``own``'s dtype, and the noise before and after."""
    patch = np.clip(np.rint(merged.samples), 0, sample_top(own.dtype)).astype(own.dtype)
    before, after = spatial_noise(own), spatial_noise(patch)
    return FusedFace(box, patch, neighbours, merged.accepted, merged.weight_sum, before, after)


def sample_top(dtype: np.dtype) -> float:
    return 65535.0 if dtype == np.uint16 else 255.0


def _fits(reference: np.ndarray, other: np.ndarray) -> bool:
    """Whether a similarity takes ``other``'s landmarks onto ``reference``'s within ``FIT_LIMIT`` face scales (a
    landmark layout the rigid part cannot follow, such as a turn into profile, is left to frame t alone)."""
    fit = umeyama_similarity(reference, other)
    moved = np.asarray(reference, np.float64) @ fit[:, :2].T + fit[:, 2]
    residual = float(np.sqrt(np.mean(np.sum((moved - np.asarray(other, np.float64)) ** 2, axis=1))))
    return residual <= FIT_LIMIT * max(float(face_scale(other)), 1.0)


def _register(reference: FaceView, view: FaceView, box: tuple[int, int, int, int]) -> Registration | None:
    """Where ``view``'s frame is read for each pixel of ``box`` of the reference frame: the landmarks' similarity,
    then dense flow for what it leaves. None where the flow must bend the region to match (``BEND_LIMIT``): another
    face under the same landmarks, not this one moved."""
    x0, y0, x1, y1 = box
    rigid = umeyama_similarity(reference.landmarks, view.landmarks)  # frame t -> the neighbour's frame
    flow, bend = _residual_flow(reference, view, rigid, box)
    if bend > BEND_LIMIT:
        return None
    cols, rows = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    px, py = cols + flow[..., 0], rows + flow[..., 1]
    map_x = (rigid[0, 0] * px + rigid[0, 1] * py + rigid[0, 2]).astype(np.float32)
    map_y = (rigid[1, 0] * px + rigid[1, 1] * py + rigid[1, 2]).astype(np.float32)
    return Registration(view.image, map_x, map_y)


def _residual_flow(
    reference: FaceView, view: FaceView, rigid: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, float]:
    """Dense flow (h, w, 2), frame t pixels, from the reference's region to the rigidly registered neighbour,
    measured on blurred 8-bit grey copies at about ``FLOW_SCALE`` px of face scale; and its bend (``_bend``) in
    face scales."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    factor = min(1.0, FLOW_SCALE / max(float(face_scale(reference.landmarks)), 1.0))
    small = (max(round(width * factor), 8), max(round(height * factor), 8))
    fx, fy = small[0] / width, small[1] / height
    own = cv2.resize(_grey(reference.image[y0:y1, x0:x1]), small, interpolation=cv2.INTER_AREA)
    # small-grid pixel (u, v) -> frame t (x0 + u / fx, y0 + v / fy) -> the neighbour's frame, read from the part of
    # its frame that covers the box (with a pixel to spare for the interpolation)
    to_frame = np.array([[1.0 / fx, 0.0, x0], [0.0, 1.0 / fy, y0], [0.0, 0.0, 1.0]])
    through = np.vstack([rigid, [0.0, 0.0, 1.0]]) @ to_frame
    corners = np.array([[0, 0, 1], [small[0], 0, 1], [0, small[1], 1], [small[0], small[1], 1]], np.float64)
    reach = corners @ through[:2].T
    height_n, width_n = view.image.shape[:2]
    left, top = (
        int(np.clip(np.floor(reach[:, k].min()) - 1, 0, limit - 1)) for k, limit in ((0, width_n), (1, height_n))
    )
    right = int(np.clip(np.ceil(reach[:, 0].max()) + 2, left + 1, width_n))
    bottom = int(np.clip(np.ceil(reach[:, 1].max()) + 2, top + 1, height_n))
    through[:2, 2] -= (left, top)
    other = cv2.warpAffine(
        _grey(view.image[top:bottom, left:right]),
        through[:2],
        small,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(cv2.GaussianBlur(own, (3, 3), 0), cv2.GaussianBlur(other, (3, 3), 0), None)
    bend = _bend(flow) / (factor * max(float(face_scale(reference.landmarks)), 1.0))
    flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    flow[..., 0] /= fx
    flow[..., 1] /= fy
    return flow, bend


def _bend(flow: np.ndarray) -> float:
    """The median distance (px) of a flow field from the affine field nearest it: what no camera or head movement
    explains. The landmarks' own errors leave an affine field; another face under them must be bent to match."""
    height, width = flow.shape[:2]
    rows, cols = np.mgrid[0:height:3, 0:width:3]  # every 3rd row and column: the same median, a ninth of the cost
    basis = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)], axis=1).astype(np.float64)
    target = flow[::3, ::3].reshape(-1, 2).astype(np.float64)
    fit, *_ = np.linalg.lstsq(basis, target, rcond=None)
    return float(np.median(np.hypot(*(target - basis @ fit).T)))


def _grey(image: np.ndarray) -> np.ndarray:
    """An 8-bit grey copy (the top byte of 16-bit samples) for the flow."""
    eight = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image
    return cv2.cvtColor(eight, cv2.COLOR_BGR2GRAY)


def _temporal_noise2(ref: np.ndarray, warped: Sequence[np.ndarray], inside: Sequence[np.ndarray], top: float) -> float:
    """The face's noise variance per sample from the registered neighbours: the median squared difference to frame
    t (robust to the parts that moved) is twice the noise's, times the median of chi-squared(1)."""
    # every 3rd row and column: the median of ~10^4 squares is as good as of all of them, at a ninth of the cost
    squares = [((w - ref)[::3, ::3] ** 2)[v[::3, ::3] > 0].ravel() for w, v in zip(warped, inside, strict=True)]
    values = np.concatenate(squares) if squares else np.zeros(0, np.float32)
    floor = (NOISE_FLOOR * top / 255.0) ** 2
    if values.size == 0:
        return floor
    return max(float(np.median(values)) / (2.0 * MEDIAN_CHI2), floor)


def _agreement(ref: np.ndarray, sample: np.ndarray, sigma2: float) -> np.ndarray:
    """Per pixel 0..1: 1 where the neighbour differs from frame t over a 5×5 patch as two noisy copies of one
    picture do, 0 where the difference is ``DISAGREE`` times that or more."""
    squared = np.mean((sample - ref) ** 2, axis=2)
    patch = cv2.boxFilter(squared, -1, (PATCH, PATCH), borderType=cv2.BORDER_REFLECT_101)
    ratio = patch / np.float32(2.0 * sigma2)
    return np.clip((DISAGREE - ratio) / (DISAGREE - AGREE), 0.0, 1.0).astype(np.float32)


def border_ramp(shape: tuple[int, int]) -> np.ndarray:
    """(h, w) 0 at the region's edge, 1 from ``FEATHER`` of its short side inwards: no seam where fusion stops."""
    height, width = shape
    reach = max(FEATHER * min(height, width), 1.0)
    ys = np.minimum(np.arange(height), np.arange(height)[::-1]).astype(np.float32)
    xs = np.minimum(np.arange(width), np.arange(width)[::-1]).astype(np.float32)
    return np.clip(np.minimum(ys[:, None], xs[None, :]) / reach, 0.0, 1.0)


@dataclass(frozen=True)
class TrackFusion:
    """What fusion did along one track: means over its fused faces."""

    id: int
    faces: int
    accepted: float  # share of the neighbours' pixels taken
    weight_sum: float  # frames in effect (1: the face's own only)
    noise_before: float  # noise sigma measured on the face region, before fusion
    noise_after: float  # ... after


@dataclass(frozen=True)
class FusionSummary:
    """The run report's ``fusion`` section: the settings, and the figures over all faces and per track."""

    frames: int  # the radius R (0: off)
    strength: float
    faces: int
    accepted: float | None
    weight_sum: float | None
    noise_before: float | None
    noise_after: float | None
    tracks: tuple[TrackFusion, ...] = ()


class FusionTally:
    """Sums of what ``fuse_face`` measured, per track (a few numbers per track: memory stays flat)."""

    def __init__(self, frames: int, strength: float) -> None:
        self.frames, self.strength = frames, strength
        self._sums: dict[int, np.ndarray] = {}  # track id -> faces, accepted, weight sum, noise before, after

    def add(self, track_id: int, fused: FusedFace) -> None:
        row = np.array([1.0, fused.accepted, fused.weight_sum, fused.noise_before, fused.noise_after])
        self._sums[track_id] = self._sums.get(track_id, np.zeros(5)) + row

    def summary(self) -> FusionSummary:
        tracks = tuple(
            TrackFusion(track_id, int(sums[0]), *(round(float(v / sums[0]), 4) for v in sums[1:]))
            for track_id, sums in sorted(self._sums.items())
        )
        total = sum(self._sums.values(), np.zeros(5))
        if not total[0]:
            return FusionSummary(self.frames, self.strength, 0, None, None, None, None, tracks)
        means = [round(float(v / total[0]), 4) for v in total[1:]]
        return FusionSummary(self.frames, self.strength, int(total[0]), *means, tracks)
