"""Where a frame's picture changed since the detector last looked, the camera's own motion taken out.

Both frames are worked on as small grey copies (``CELL`` source px to a cell, area-averaged, which also
averages the grain and noise away). The camera's motion from the last look to now is a similarity fitted
with RANSAC to corners followed by pyramidal Lucas–Kanade, so a pan, a zoom or a hand-held shake moves the
old copy onto the new one instead of changing everything. A cell has changed where the two differ by more
than ``_CHANGED`` grey levels after a small blur, or where the old copy does not reach (the part of the
picture the camera brought into view). Changes are measured from the look before last (``LOOKS``), so what
appears is searched at two key frames.

A face the detector did not find in a cell that has not changed is not there to be found now either (the
same pixels give the detector the same answer), so a key frame need search only the changed cells.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

CELL = 8  # source px per cell (at a long side of up to ``_FULL_SIDE``; more above it, so the map stays small)
_FULL_SIDE = 2048  # long side (px) up to which a cell is ``CELL`` px
_CHANGED = 14.0  # grey levels (8-bit) between the two copies at which a cell has changed
_CORNERS = 200
_LK = dict(winSize=(15, 15), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
_MIN_INLIERS = 12
#: looks a change is measured over: what changed since the look before last is searched at two key frames, so a
#: face at the detector's limit as it comes into view (a pan, a door) gets a second chance
LOOKS = 2


@dataclass(frozen=True)
class Changed:
    """The changed cells of a frame: ``cells`` (rows, columns) bool, ``cell`` source px a side; ``grey``: the
    frame's small grey copy they were measured on (``ChangeMap.changed``'s), for ``ChangeMap.look`` to keep."""

    cells: np.ndarray
    cell: float
    grey: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def share(self) -> float:
        return float(self.cells.mean()) if self.cells.size else 1.0

    def regions(self, grow: float, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """Source-pixel regions (x0, y0, x1, y1) covering the changed cells, each grown by ``grow`` px a side and
        merged where they overlap; in a fixed order (top to bottom, left to right)."""
        count, _, stats, _ = cv2.connectedComponentsWithStats(self.cells.astype(np.uint8), connectivity=8)
        boxes = [
            (
                max(0, int(x * self.cell - grow)),
                max(0, int(y * self.cell - grow)),
                min(width, int(np.ceil((x + w) * self.cell + grow))),
                min(height, int(np.ceil((y + h) * self.cell + grow))),
            )
            for x, y, w, h, _ in stats[1:count]
        ]
        return _merged(boxes)


class ChangeMap:
    """The picture at the detector's last ``LOOKS`` looks; ``changed`` compares a frame with the oldest of them,
    ``look`` moves them on."""

    def __init__(self) -> None:
        self._looks: deque[np.ndarray] = deque(maxlen=LOOKS)

    def forget(self) -> None:
        self._looks.clear()

    @property
    def ready(self) -> bool:
        return bool(self._looks)

    def look(self, image: np.ndarray, changed: Changed | None = None) -> None:
        """The detector has looked at ``image`` (where ``changed`` said, or everywhere). ``changed``: the answer
        ``changed(image)`` gave for this same ``image``, whose grey copy is kept instead of being made again."""
        grey = changed.grey if changed is not None else None
        self._looks.append(grey if grey is not None else _grey_cells(image))

    def changed(self, image: np.ndarray) -> Changed:
        """The cells of ``image`` that differ from the oldest look kept, the camera's motion taken out; all of them
        when there was no look yet."""
        grey = _grey_cells(image)
        cell = max(image.shape[:2]) / max(grey.shape)
        if not self._looks or self._looks[0].shape != grey.shape:
            return Changed(np.ones(grey.shape, bool), cell, grey)
        last = self._looks[0]
        camera = _camera_motion(last, grey)
        height, width = grey.shape
        moved = cv2.warpAffine(last, camera, (width, height), flags=cv2.INTER_LINEAR, borderValue=-1.0)
        difference = np.abs(cv2.GaussianBlur(grey, (3, 3), 0) - cv2.GaussianBlur(moved, (3, 3), 0))
        reached = cv2.warpAffine(np.ones_like(last), camera, (width, height), flags=cv2.INTER_NEAREST, borderValue=0.0)
        cells = (difference > _CHANGED) | (cv2.erode(reached, np.ones((3, 3), np.uint8)) < 0.5)
        return Changed(cells, cell, grey)


def _grey_cells(image: np.ndarray) -> np.ndarray:
    """``image`` as a float32 grey copy, one pixel a cell."""
    height, width = image.shape[:2]
    cell = CELL * max(1.0, max(height, width) / _FULL_SIDE)
    size = (max(1, round(width / cell)), max(1, round(height / cell)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return small.astype(np.float32)


def _camera_motion(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The similarity taking ``before`` to ``after`` (2×3), from corners both show; identity without enough."""
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    a, b = before.astype(np.uint8), np.clip(after, 0, 255).astype(np.uint8)
    corners = cv2.goodFeaturesToTrack(a, _CORNERS, 0.01, 4)
    if corners is None or len(corners) < _MIN_INLIERS:
        return identity
    followed, status, _ = cv2.calcOpticalFlowPyrLK(a, b, corners, None, **_LK)
    good = status.ravel() == 1
    if good.sum() < _MIN_INLIERS:
        return identity
    fit, inliers = cv2.estimateAffinePartial2D(
        corners[good], followed[good], method=cv2.RANSAC, ransacReprojThreshold=1.0, maxIters=500, refineIters=10
    )
    if fit is None or inliers is None or int(inliers.sum()) < _MIN_INLIERS:
        return identity
    return fit


def _merged(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """``boxes`` with every overlapping pair replaced by their union, until none overlap; sorted."""
    boxes = sorted(boxes, key=lambda b: (b[1], b[0]))
    merged = True
    while merged:
        merged = False
        out: list[tuple[int, int, int, int]] = []
        for box in boxes:
            for k, other in enumerate(out):
                if box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]:
                    out[k] = _union(box, other)
                    merged = True
                    break
            else:
                out.append(box)
        boxes = sorted(out, key=lambda b: (b[1], b[0]))
    return boxes


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])
