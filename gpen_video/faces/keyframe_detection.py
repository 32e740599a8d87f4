"""Full detection on key frames: a coarse pass on a downscaled copy for the big faces, and a pass at source
resolution for the small ones, swept over the frame in bands from key frame to key frame."""

from __future__ import annotations

import cv2
import numpy as np

from gpen_video.config import FacesConfig
from gpen_video.faces.association import box_iou
from gpen_video.faces.detectors.base import Detector
from gpen_video.faces.types import Detections

_FINE_BUDGET = 1.0  # below the sweep limit, the small-face pass costs about this times the coarse one per key frame
_COARSE_MIN = 12  # smallest box (px) the detector can see
_COARSE_FROM = 18  # smallest box (px) asked for on the downscaled copy when a fine pass covers the rest
_PYRAMID_STEP = 0.709  # face size from one level of the detector's pyramid to the next (MTCNN's)
_LEVEL_REACH = 0.84  # a pyramid level finds faces down to about this times its own face size
_BAND_REACH = 0.75  # of the largest small face: how far a fine-pass band reaches past its share of the frame
_TILE = 640  # tile side (px) for detectors that see a fixed-size input


class KeyframeDetection:
    """The detector's full passes over a key frame; ``new_shot`` restarts the small-face sweep."""

    def __init__(self, detector: Detector, config: FacesConfig):
        self.detector = detector
        self.config = config
        self._fine_sweep = 0  # key frames since the shot's first: which band of the small-face pass is next

    def new_shot(self) -> None:
        self._fine_sweep = 0

    def detect(self, image: np.ndarray) -> Detections:
        """Full detection wherever a face of ``min_face`` source px could be; frame coordinates out.

        A coarse pass sees a copy whose long side is about ``detect_size`` (the big faces); where that copy
        would shrink a ``min_face`` face below what the detector can see, a fine pass looks for the small
        faces only, at source resolution (or the least upscale the detector needs): MTCNN by its own image
        pyramid cut to the small levels, other detectors on overlapping tiles.
        """
        height, width = image.shape[:2]
        target = self.config.detect_size
        factor = 1.0 if target <= 0 or max(height, width) <= target else target / max(height, width)
        kept_from = max(float(self.config.min_face), 4.0)
        smallest = kept_from * 0.8  # a little below the smallest face kept
        coarse_min = max(_COARSE_MIN, int(smallest * factor))
        if factor < 1.0 and coarse_min < _COARSE_FROM:
            coarse_min = _COARSE_FROM  # the copy's costly fine levels: the source-resolution pass does them
        if factor < 1.0:
            small = cv2.resize(image, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
            found = self.detector.detect(small, min_size=coarse_min).scaled(1.0 / factor)
        else:
            found = self.detector.detect(image, min_size=coarse_min)
        covered_from = coarse_min / factor  # source px: the coarse pass finds faces at least this big
        if factor < 1.0 and kept_from < covered_from:
            # the fine pass continues the coarse pass's pyramid downwards to the last level that still sees a face
            # of ``min_face`` (levels for faces below it were 36 % of a 4K sweep)
            fine_from = covered_from
            while fine_from * _PYRAMID_STEP >= kept_from * _LEVEL_REACH:
                fine_from *= _PYRAMID_STEP
            # PNet pixels of the fine pass (levels from ``fine_from`` up) against the coarse pass's
            cost = (coarse_min / (factor * max(fine_from, _COARSE_MIN))) ** 2
            fine = self._detect_small(image, fine_from, covered_from * 0.99, cost)
            found = _merge(found, fine)
        keep = found.scores >= self.config.score_threshold
        return found.select(keep)

    def _detect_small(self, image: np.ndarray, smallest: float, largest: float, cost_ratio: float) -> Detections:
        """Faces between ``smallest`` and ``largest`` source px, at source resolution.

        On a shot's first key frame the whole frame is searched; after that, one horizontal band per key
        frame (bands overlap by 1.5 times the largest face): as many bands as keep the pass near
        ``_FINE_BUDGET`` times the coarse one, but never more than the key frames in ``small_face_sweep``
        frames, so a face that comes into view is looked for within that many frames.
        """
        smallest = max(smallest, float(_COARSE_MIN))  # below the detector's own minimum: not worth restoring
        height = image.shape[0]
        keyframes_per_sweep = max(1, self.config.small_face_sweep // max(1, self.config.keyframe_interval))
        bands = max(1, min(int(np.ceil(cost_ratio / _FINE_BUDGET)), keyframes_per_sweep))
        if self._fine_sweep == 0:
            bands = 1
        band = self._fine_sweep % bands
        self._fine_sweep += 1
        # every face has its centre in one band; the band reaches half the largest face (and a margin) past
        # its edges, so that face lies wholly inside it (twice the largest face each side made a 4K band ~5x
        # its share of the frame)
        overlap = int(np.ceil(_BAND_REACH * largest))
        y0 = max(0, int(band * height / bands) - overlap)
        y1 = min(height, int((band + 1) * height / bands) + overlap)
        part = image[y0:y1]
        # largest rounded down: a level for faces of about ``largest`` is the coarse pass's first one again
        min_size, max_size = int(smallest), int(largest)
        if self.detector.whole_frame_pyramid:
            found = self.detector.detect(part, min_size=min_size, max_size=max_size)
        else:
            found = _tiled(self.detector, part, min_size, max_size)
        shift = np.array([0.0, y0, 0.0, y0], np.float32)
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
                shift = np.array([x0, y0], np.float32)
                part = Detections(
                    part.boxes + np.tile(shift, 2),
                    part.scores,
                    part.landmarks + shift,
                    None if part.anchor_boxes is None else part.anchor_boxes + np.tile(shift, 2),
                )
                found = _merge(found, part)
    return found
