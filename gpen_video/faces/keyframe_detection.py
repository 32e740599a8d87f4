"""Full detection on key frames: a coarse pass on a downscaled copy for the big faces, and a pass at source
resolution for the small ones.

A *sweep* searches the whole frame (the small-face pass in bands from key frame to key frame); it runs on a
shot's first frame, at sync frames, and at least every ``_SWEEP_EVERY`` key frames.
Between sweeps (``faces.keyframe_search`` "changed") a key frame searches only where the picture changed since
the detector last looked, the camera's motion taken out (``change_map``), and looks again around each tracked
face (re-anchoring). What it leaves out gave the detector nothing the last time it looked, and the same pixels
give it the same answer: on a steady shot a key frame costs a few milliseconds, not a whole-frame search.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from gpen_video.config import FacesConfig
from gpen_video.faces.association import box_iou
from gpen_video.faces.change_map import Changed, ChangeMap
from gpen_video.faces.detectors.base import Detector
from gpen_video.faces.framing import region_around
from gpen_video.faces.types import Detections

_FINE_BUDGET = 1.0  # below the sweep limit, the small-face pass costs about this times the coarse one per key frame
_COARSE_MIN = 12  # smallest box (px) the detector can see
_COARSE_FROM = 18  # smallest box (px) asked for on the downscaled copy when a fine pass covers the rest
_PYRAMID_STEP = 0.709  # face size from one level of the detector's pyramid to the next (MTCNN's)
_LEVEL_REACH = 0.84  # a pyramid level finds faces down to about this times its own face size
_BAND_REACH = 0.75  # of the largest small face: how far a fine-pass band reaches past its share of the frame
_TILE = 640  # tile side (px) for detectors that see a fixed-size input
LOOK_SIDE = 96.0  # face side (px) a look around a face shrinks a bigger face to
_SWEEP_EVERY = 12  # key frames between whole-frame sweeps at most (8-frame key frames: 4 s at 24 fps)
_SWEEP_OVER = 0.5  # share of the frame the changed regions may cover before a sweep is cheaper
_GROW = 0.1  # of the frame's short side: how far a changed region's search reaches past its changed cells
_AROUND = 0.25  # of a tracked face's side: how far past its box the changes are its own (its look covers them)
_RETRY_BANDS = 4  # between sweeps, the small-face pass searches the frame again in this many bands, one a key frame


class KeyframeDetection:
    """The detector's passes over key frames; ``new_shot`` restarts the sweep (a shot's first key frame, a sync
    frame: what is found from there on depends on no frame before it)."""

    def __init__(self, detector: Detector, config: FacesConfig, pool: Executor | None = None):
        self.detector = detector
        self.config = config
        self._each = pool.map if pool is not None else map  # the searches of a key frame, results in order
        self.sweeps = 0  # key frames searched whole
        self.changed_searches = 0  # key frames searched where the picture changed (and around the tracked faces)
        self._fine_sweep = 0  # key frames since the shot's first: which band of the small-face pass is next
        self._changes = ChangeMap()
        self._since_sweep = 0

    def new_shot(self) -> None:
        self._fine_sweep = 0
        self._changes.forget()

    def detect(self, image: np.ndarray, tracked: np.ndarray | None = None) -> Detections:
        """The faces of key frame ``image`` (frame coordinates) of ``min_face`` source px or more.

        ``tracked``: boxes (N, 4) of the faces followed into this frame (or, lost, carried there by their motion),
        looked at again between sweeps.
        """
        tracked = np.zeros((0, 4)) if tracked is None else np.asarray(tracked, np.float64)
        passes = self._passes(*image.shape[:2])  # the frame's, for every search of it
        changed: Changed | None = None
        regions = None
        if self.config.keyframe_search == "changed" and self._changes.ready and self._since_sweep < _SWEEP_EVERY - 1:
            changed = self._changes.changed(image)
            regions = self._changed_regions(image, changed, tracked)
        if regions is None:
            banded = self.config.keyframe_search == "whole" and passes.fine is not None
            found = self._search(image, passes, band=self._sweep_band(passes) if banded else (0, 1))
            self._since_sweep = 0
            self.sweeps += 1
        else:
            found = self._search_changed(image, passes, regions, tracked)
            self._since_sweep += 1
            self.changed_searches += 1
        self._changes.look(image, changed)  # the grey copy ``changed`` made of this frame, if it made one
        return found.select(found.scores >= self.config.score_threshold)

    def _search_changed(
        self, image: np.ndarray, passes: _Passes, regions: list[tuple[int, int, int, int]], tracked: np.ndarray
    ) -> Detections:
        """A key frame between sweeps: ``passes`` over the changed ``regions``, a look around each ``tracked`` face,
        and one band of the small-face pass again; the searches on the pool, merged in order."""
        searches = [partial(self._search_region, image, passes, region) for region in regions]
        searches += [partial(look_around, self.detector, image, box) for box in tracked]
        if passes.fine is not None:
            # the small faces again, one band of the frame a key frame: a face at the detector's limit passes on
            # one look and fails on the next, so an unchanged picture still gets ``_RETRY_BANDS`` key frames' worth
            retry = (self._since_sweep % _RETRY_BANDS, _RETRY_BANDS)
            searches.append(partial(self._detect_small, image, *passes.fine, retry))
        found = Detections.empty()
        for part in self._each(lambda search: search(), searches):
            found = _merge(found, part)
        return found

    def _changed_regions(
        self, image: np.ndarray, changed: Changed, tracked: np.ndarray
    ) -> list[tuple[int, int, int, int]] | None:
        """Where to search ``image``: around its ``changed`` cells, less the tracked faces' own changes (their looks
        cover them); None where that is most of the frame (a sweep then costs about the same)."""
        height, width = image.shape[:2]
        cells, cell = changed.cells.copy(), changed.cell
        for box in tracked:
            side = float(max(box[2] - box[0], box[3] - box[1]))
            x0, y0, x1, y1 = region_around(box, _AROUND * side, width, height)
            cells[int(y0 // cell) : int(np.ceil(y1 / cell)), int(x0 // cell) : int(np.ceil(x1 / cell))] = False
        regions = Changed(cells, cell).regions(_GROW * min(height, width), width, height)
        area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions)
        return None if area > _SWEEP_OVER * width * height else regions

    def _passes(self, height: int, width: int) -> _Passes:
        """What the passes over a ``width``×``height`` frame look for (a region of it is searched the same way).

        A coarse pass sees a copy whose long side is about ``detect_size`` (the big faces); where that copy would
        shrink a ``min_face`` face below what the detector can see, a fine pass looks for the small faces only, at
        source resolution (or the least upscale the detector needs): MTCNN by its own image pyramid cut to the
        small levels, other detectors on overlapping tiles.
        """
        target = self.config.detect_size
        factor = 1.0 if target <= 0 or max(height, width) <= target else target / max(height, width)
        kept_from = max(float(self.config.min_face), 4.0)
        coarse_min = max(_COARSE_MIN, int(kept_from * 0.8 * factor))  # a little below the smallest face kept
        if factor < 1.0 and coarse_min < _COARSE_FROM:
            coarse_min = _COARSE_FROM  # the copy's costly fine levels: the source-resolution pass does them
        covered_from = coarse_min / factor  # source px: the coarse pass finds faces at least this big
        if factor == 1.0 or kept_from >= covered_from:
            return _Passes(factor, coarse_min, None)
        # the fine pass continues the coarse pass's pyramid downwards to the last level that still sees a face of
        # ``min_face`` (levels for faces below it were 36 % of a 4K sweep)
        fine_from = covered_from
        while fine_from * _PYRAMID_STEP >= kept_from * _LEVEL_REACH:
            fine_from *= _PYRAMID_STEP
        # PNet pixels of the fine pass (levels from ``fine_from`` up) against the coarse pass's
        cost = (coarse_min / (factor * max(fine_from, _COARSE_MIN))) ** 2
        return _Passes(factor, coarse_min, (max(fine_from, float(_COARSE_MIN)), covered_from * 0.99), cost)

    def _search_region(self, image: np.ndarray, passes: _Passes, region: tuple[int, int, int, int]) -> Detections:
        """``_search`` of ``region``, in frame coordinates."""
        return _shifted(self._search(image, passes, region), region[0], region[1])

    def _search(
        self,
        image: np.ndarray,
        passes: _Passes,
        region: tuple[int, int, int, int] | None = None,
        band: tuple[int, int] = (0, 1),
    ) -> Detections:
        """Both ``passes`` (the whole frame's: a region is searched the same way) over ``region`` of ``image`` (all
        of it: None), in the region's coordinates; the fine pass over horizontal ``band`` (which, of how many) of it
        only."""
        if region is not None:
            image = image[region[1] : region[3], region[0] : region[2]]
        height, width = image.shape[:2]
        if passes.factor < 1.0:
            size = (max(1, round(width * passes.factor)), max(1, round(height * passes.factor)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            found = self.detector.detect(small, min_size=passes.coarse_min).scaled(1.0 / passes.factor)
        else:
            found = self.detector.detect(image, min_size=passes.coarse_min)
        if passes.fine is not None:
            found = _merge(found, self._detect_small(image, *passes.fine, band))
        return found

    def _sweep_band(self, passes: _Passes) -> tuple[int, int]:
        """The fine pass's band on a sweep with ``faces.keyframe_search`` "whole": the whole frame on a shot's first
        key frame; after that one band per key frame, as many bands as keep the pass near ``_FINE_BUDGET`` times
        the coarse one, but never more than the key frames in ``small_face_sweep`` frames, so a face that comes
        into view is looked for within that many frames."""
        keyframes_per_sweep = max(1, self.config.small_face_sweep // max(1, self.config.keyframe_interval))
        bands = max(1, min(int(np.ceil(passes.cost / _FINE_BUDGET)), keyframes_per_sweep))
        if self._fine_sweep == 0:
            bands = 1
        band = self._fine_sweep % bands
        self._fine_sweep += 1
        return band, bands

    def _detect_small(self, image: np.ndarray, smallest: float, largest: float, band: tuple[int, int]) -> Detections:
        """Faces between ``smallest`` and ``largest`` source px, at source resolution, in horizontal ``band`` of
        ``image``: every face has its centre in one band, and a band reaches ``_BAND_REACH`` of the largest face
        past its edges, so that face lies wholly inside it (twice the largest face each side made a 4K band ~5x its
        share of the frame)."""
        which, bands = band
        height = image.shape[0]
        overlap = int(np.ceil(_BAND_REACH * largest))
        y0 = max(0, int(which * height / bands) - overlap)
        y1 = min(height, int((which + 1) * height / bands) + overlap)
        part = image[y0:y1]
        # largest rounded down: a level for faces of about ``largest`` is the coarse pass's first one again
        min_size, max_size = int(smallest), int(largest)
        if self.detector.whole_frame_pyramid:
            found = self.detector.detect(part, min_size=min_size, max_size=max_size)
        else:
            found = _tiled(self.detector, part, min_size, max_size)
        return _shifted(found, 0, y0)


@dataclass(frozen=True)
class _Passes:
    """The passes a key frame's search makes: the coarse one on a copy ``factor`` the size, for faces from
    ``coarse_min`` px there; the fine one at source resolution for faces of ``fine`` (smallest, largest) source
    px, None where the coarse pass sees them all; ``cost``: the fine pass's PNet pixels over the coarse pass's."""

    factor: float
    coarse_min: int
    fine: tuple[float, float] | None
    cost: float = 0.0


def look_around(detector: Detector, image: np.ndarray, box: np.ndarray) -> Detections:
    """The face around ``box`` (frame coordinates; none, or the one detection that overlaps it best): the detector
    on the region a face side around it, a face bigger than ``LOOK_SIDE`` shrunk to about that size (still finer
    than a coarse pass sees it: the pyramid's resizes of a 4K face's full-size region cost ~18 ms a look)."""
    box = np.asarray(box, np.float64)
    side = float(max(box[2] - box[0], box[3] - box[1]))
    height, width = image.shape[:2]
    x0, y0, x1, y1 = region_around(box, side, width, height)
    if x1 - x0 < 12 or y1 - y0 < 12:
        return Detections.empty()
    region = image[y0:y1, x0:x1]
    shrink = min(1.0, LOOK_SIDE / max(side, 1.0))
    if shrink < 1.0:
        size = (max(12, round((x1 - x0) * shrink)), max(12, round((y1 - y0) * shrink)))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        shrink = size[0] / (x1 - x0)
    found = detector.detect(region, min_size=max(12, int(0.5 * side * shrink)), max_size=int(2 * side * shrink) + 1)
    if len(found) == 0:
        return found
    found = _shifted(found.scaled(1.0 / shrink), x0, y0)
    overlap = box_iou(box, found.boxes)[0]
    best = int(np.argmax(overlap))
    if overlap[best] <= 0.3:
        return Detections.empty()
    return found.select(np.array([best]))


def _shifted(found: Detections, x: float, y: float) -> Detections:
    """``found`` moved by (``x``, ``y``) px."""
    if x == 0 and y == 0:
        return found
    shift = np.array([x, y, x, y], np.float32)
    anchors = None if found.anchor_boxes is None else found.anchor_boxes + shift
    return Detections(found.boxes + shift, found.scores, found.landmarks + shift[:2], anchors)


def _merge(a: Detections, b: Detections) -> Detections:
    """Both passes' detections, overlapping ones (the same face seen twice) kept once, the better score."""
    if len(b) == 0:
        return a
    if len(a) == 0:
        return b
    anchors = None
    if a.anchor_boxes is not None and b.anchor_boxes is not None:
        anchors = np.concatenate([a.anchor_boxes, b.anchor_boxes])
    both = Detections(
        np.concatenate([a.boxes, b.boxes]),
        np.concatenate([a.scores, b.scores]),
        np.concatenate([a.landmarks, b.landmarks]),
        anchors,
    )
    order = np.argsort(-both.scores, kind="stable")
    kept: list[int] = []
    for i in order:
        if kept and box_iou(both.boxes[i], both.boxes[kept]).max() > 0.4:
            continue
        kept.append(int(i))
    return both.select(np.asarray(sorted(kept), np.int64))


def _tiled(detector: Detector, image: np.ndarray, min_size: int, max_size: int) -> Detections:
    """``detector`` on overlapping tiles of ``image`` (overlap: twice the largest face wanted)."""
    height, width = image.shape[:2]
    overlap = 2 * max_size
    step = max(_TILE - overlap, _TILE // 2)
    found = Detections.empty()
    for y0 in range(0, max(height - overlap, 1), step):
        for x0 in range(0, max(width - overlap, 1), step):
            tile = image[y0 : y0 + _TILE, x0 : x0 + _TILE]
            part = detector.detect(tile, min_size=min_size, max_size=max_size)
            if len(part):
                found = _merge(found, _shifted(part, x0, y0))
    return found
