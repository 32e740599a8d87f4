"""A face region's frame-to-frame motion, measured from the pixels.

Corners inside the face box of the previous frame (``goodFeaturesToTrack``) are followed into the
current frame with pyramidal Lucas–Kanade, checked by tracking them back (forward–backward error), and
a similarity (rotation, uniform scale, translation) is fitted to the survivors with RANSAC
(``estimateAffinePartial2D``). The region is worked on at about ``WORK_SIDE`` pixels across whatever the
face's size, so a 4K close-up costs what a small face does. A motion is *reliable* only when enough
features agree and the fit is a plausible camera/face movement; the smoother never carries an
observation across an unreliable link (blur, occlusion, a face too small to have corners, a cut).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

WORK_SIDE = 96.0  # face box side (px) the region is resampled to before tracking
_MARGIN = 0.6  # of the box side, added around the box for the search region
_MIN_INLIERS = 8
_MIN_INLIER_FRACTION = 0.5
_FB_ERROR = 0.7  # forward-backward error (work px) above which a feature is dropped
_RANSAC_PX = 1.0  # work px
_HOLD = 0.1  # of the face size: how far a face may move (or grow) before its measuring region is placed anew
_CORNERS = 48  # corners followed per face
_CORNER_REACH = 6  # work px: how far outside a pixel the corner measure (5x5 block, 3x3 Sobel, 3x3 maximum) looks
_LK = dict(winSize=(13, 13), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.01))

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass
class Motion:
    """Similarity taking frame ``index - 1`` pixels of a face region to frame ``index`` pixels."""

    affine: np.ndarray  # 2×3 float64
    reliable: bool
    inliers: int = 0
    #: frame ``index`` → ``index - 1`` (the smoother's carry of later observations), once per link; identity where
    #: unreliable (never carried; a degenerate fit may have no inverse)
    inverse: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.inverse = invert(self.affine) if self.reliable else IDENTITY.copy()


def compose(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """The 2×3 affine doing ``earlier`` then ``later``."""
    out = np.empty((2, 3))
    out[:, :2] = later[:, :2] @ earlier[:, :2]
    out[:, 2] = later[:, :2] @ earlier[:, 2] + later[:, 2]
    return out


def invert(affine: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(affine[:, :2])
    return np.hstack([inv, (-inv @ affine[:, 2])[:, None]])


def apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ affine[:, :2].T + affine[:, 2]


def _gray_region(image: np.ndarray, x0: float, y0: float, size: int, factor: float) -> np.ndarray:
    """``size``×``size`` grey copy of the frame from (x0, y0) at ``factor`` work px per frame px."""
    warp = np.array([[factor, 0.0, -factor * x0], [0.0, factor, -factor * y0]])
    # crop the source first: warping a whole 4K frame for a small region would cost the frame
    reach = size / factor
    height, width = image.shape[:2]
    cx0, cy0 = max(int(np.floor(x0)) - 2, 0), max(int(np.floor(y0)) - 2, 0)
    cx1, cy1 = min(int(np.ceil(x0 + reach)) + 2, width), min(int(np.ceil(y0 + reach)) + 2, height)
    if cx1 - cx0 < 2 or cy1 - cy0 < 2:
        return np.zeros((size, size), np.uint8)
    part = image[cy0:cy1, cx0:cx1]
    gray = cv2.cvtColor(part, cv2.COLOR_BGR2GRAY) if part.ndim == 3 else part
    if factor < 0.7:
        gray = cv2.GaussianBlur(gray, (0, 0), 0.45 / factor)
    warp[:, 2] += warp[:, :2] @ np.array([cx0, cy0], np.float64)
    return cv2.warpAffine(gray, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class _Placement:
    """Where a face's region is taken: origin (frame px), side (work px), work px per frame px, and the face box
    side (frame px) it was placed for."""

    x0: float
    y0: float
    size: int
    factor: float
    side: float

    @classmethod
    def around(cls, box: np.ndarray) -> _Placement:
        side = float(max(box[2] - box[0], box[3] - box[1], 4.0))
        factor = min(WORK_SIDE / side, 3.0)
        span = side * (1.0 + 2.0 * _MARGIN)
        cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
        return cls(cx - span / 2, cy - span / 2, int(np.ceil(span * factor)), factor, side)

    def holds(self, box: np.ndarray) -> bool:
        """Whether ``box`` is still near this region's middle and of about its size (the region still fits it)."""
        side = float(max(box[2] - box[0], box[3] - box[1], 4.0))
        span = self.side * (1.0 + 2.0 * _MARGIN)
        cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
        off = max(abs(cx - (self.x0 + span / 2)), abs(cy - (self.y0 + span / 2)))
        return off <= _HOLD * self.side and abs(side / self.side - 1.0) <= _HOLD

    def gray(self, image: np.ndarray) -> np.ndarray:
        return _gray_region(image, self.x0, self.y0, self.size, self.factor)


class MotionMeter:
    """One track's motion, frame after frame (``measure_motion`` with a memory).

    The region a face is measured in stays put while the face stays near its middle (within ``_HOLD`` of its
    size), so the grey copy of each frame there is made once and is the next measurement's "before".
    """

    def __init__(self) -> None:
        self._placement: _Placement | None = None
        self._last: tuple[int, np.ndarray] | None = None  # (frame index, grey copy at the placement)

    def measure(self, index: int, previous: np.ndarray, current: np.ndarray, box: np.ndarray) -> Motion:
        """Motion of the face in ``box`` (in frame ``index - 1``, ``previous``) into frame ``index`` (``current``)."""
        box = np.asarray(box, np.float64)
        placement = self._placement
        before = None
        if placement is not None and placement.holds(box):
            if self._last is not None and self._last[0] == index - 1:
                before = self._last[1]
        else:
            placement = _Placement.around(box)
        if before is None:
            before = placement.gray(previous)
        after = placement.gray(current)
        self._placement, self._last = placement, (index, after)
        return _measure(before, after, box, placement)


def measure_motion(previous: np.ndarray, current: np.ndarray, box: np.ndarray) -> Motion:
    """Motion of the face in ``box`` (x0, y0, x1, y1 in ``previous``) from ``previous`` to ``current`` (BGR)."""
    box = np.asarray(box, np.float64)
    placement = _Placement.around(box)
    return _measure(placement.gray(previous), placement.gray(current), box, placement)


def _measure(before: np.ndarray, after: np.ndarray, box: np.ndarray, placement: _Placement) -> Motion:
    """The similarity taking ``before`` to ``after`` (grey copies at ``placement``) for the face in ``box``."""
    x0, y0, size, factor = placement.x0, placement.y0, placement.size, placement.factor
    inner = (np.array([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0]) * factor).round().astype(int)
    # corners inside the box only: searched on the box and a margin the corner measure reaches over (the same
    # corners as on the whole region with the box as mask, at a fifth of the cost)
    cx0, cy0 = max(inner[0], 0) - _CORNER_REACH, max(inner[1], 0) - _CORNER_REACH
    cx0, cy0 = max(cx0, 0), max(cy0, 0)
    cx1, cy1 = min(inner[2] + _CORNER_REACH, size), min(inner[3] + _CORNER_REACH, size)
    mask = np.zeros((max(cy1 - cy0, 0), max(cx1 - cx0, 0)), np.uint8)
    mask[max(inner[1], 0) - cy0 : inner[3] - cy0, max(inner[0], 0) - cx0 : inner[2] - cx0] = 255
    corners = None
    if mask.size and mask.any():
        corners = cv2.goodFeaturesToTrack(
            before[cy0:cy1, cx0:cx1], maxCorners=_CORNERS, qualityLevel=0.01, minDistance=4, mask=mask, blockSize=5
        )
    if corners is None or len(corners) < _MIN_INLIERS:
        return Motion(IDENTITY.copy(), False, 0)
    p0 = (corners + np.array([cx0, cy0], np.float32)).astype(np.float32)
    p1, ok1, _ = cv2.calcOpticalFlowPyrLK(before, after, p0, None, **_LK)
    back, ok2, _ = cv2.calcOpticalFlowPyrLK(after, before, p1, None, **_LK)
    fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
    good = (ok1.reshape(-1) == 1) & (ok2.reshape(-1) == 1) & (fb < _FB_ERROR)
    if int(good.sum()) < _MIN_INLIERS:
        return Motion(IDENTITY.copy(), False, int(good.sum()))
    src, dst = p0.reshape(-1, 2)[good], p1.reshape(-1, 2)[good]
    fit, inliers = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=_RANSAC_PX, maxIters=200, confidence=0.99
    )
    if fit is None:
        return Motion(IDENTITY.copy(), False, 0)
    count = int(inliers.sum())
    scale = float(np.sqrt(abs(np.linalg.det(fit[:, :2]))))
    angle = abs(float(np.degrees(np.arctan2(fit[1, 0], fit[0, 0]))))
    reliable = (
        count >= _MIN_INLIERS and count >= _MIN_INLIER_FRACTION * len(src) and 0.85 < scale < 1.18 and angle < 12.0
    )
    # work coordinates -> frame coordinates: x_w = factor * (x - origin)
    to_work = np.array([[factor, 0.0, -factor * x0], [0.0, factor, -factor * y0]])
    frame_fit = compose(invert(to_work), compose(fit.astype(np.float64), to_work))
    return Motion(frame_fit, bool(reliable), count)
