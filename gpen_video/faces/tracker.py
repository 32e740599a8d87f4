"""Persistent face tracks: full detection on key frames, cheap landmark refinement in between.

Every observation of a tracked face is made the same way: the detector's landmark stage (MTCNN's
ONet) run on a box placed by a fixed rule around the face's predicted landmarks (see
``canonical_box``). Because the crop is framed the same way on key frames and in between, the
landmarks carry no step every N frames, and their remaining jitter is the kind the smoother removes.
The full detector only finds new faces and re-anchors faces the refinement lost. Detections are
matched to tracks by IoU plus landmark distance with the Hungarian method.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from gpen_video.config import FacesConfig
from gpen_video.faces.detectors.base import Detector
from gpen_video.faces.motion import IDENTITY, Motion, MotionMeter, apply, compose
from gpen_video.faces.types import Detections, face_box, face_scale, frontalness, plausible_face

log = logging.getLogger(__name__)

#: canonical refinement box around 5 landmarks, in units of the eye-to-mouth distance (measured on
#: MTCNN's own stage-2 boxes for real faces: side 2.7, centre 0.24 above the landmarks' centroid)
BOX_SIDE = 2.7
BOX_LIFT = 0.24
_MATCH_GATE = 1.0  # cost above which a detection and a track are not the same face
_DUPLICATE_IOU = 0.5
_PREDICT_FROM = 6  # observations the motion prediction is fitted to
_REFINE_THRESHOLD = 0.5  # a face already tracked needs less evidence than a new one
_SCALE_GAIN = 0.3  # how far each key-frame detection moves a track's box size toward its own
_CONFIRM_AFTER = 2  # a new candidate's second look: the detector on its region this many frames after it appeared
_ROLL_FREE = np.radians(3.0)  # roll away from the detected one (radians) that the refinement leaves as it is
_CUT_VETO = 2.0 / 3.0  # share of tracked faces followed by their motion that overrules a content cut
_FINE_BUDGET = 1.0  # the small-face pass may cost this many times the coarse pass per key frame (it sweeps bands)
_LOOK_SIDE = 96.0  # face side (px) a candidate's second look shrinks a bigger face to
_COARSE_MIN = 12  # smallest box (px) the detector can see
_COARSE_FROM = 18  # smallest box (px) asked for on the downscaled copy when a fine pass covers the rest
_PYRAMID_STEP = 0.709  # face size from one level of the detector's pyramid to the next (MTCNN's)
_LEVEL_REACH = 0.84  # a pyramid level finds faces down to about this times its own face size
_BAND_REACH = 0.75  # of the largest small face: how far a fine-pass band reaches past its share of the frame
_TILE = 640  # tile side (px) for detectors that see a fixed-size input
#: landmark box side (px) below which a face's refinement box follows its measured motion, not its own answers:
#: ONet's answer for a small face follows the box it is given (and leans up and to upright), so boxes placed from
#: those answers drift and turn away (21-25 px faces of a 4K crowd: 8-10 px off and 20-50 degrees turned within
#: 20-35 frames, then lost)
_FOLLOW_MOTION_BELOW = 48.0


@dataclass
class Observation:
    """One measured face in one frame (before smoothing)."""

    index: int
    landmarks: np.ndarray  # (5, 2) float64 frame pixels
    box: np.ndarray  # (4,) float64
    score: float
    spread: float = 0.0  # disagreement of the refinement's looks (face scales); 0 where unknown


@dataclass
class Track:
    """A face followed through one shot."""

    id: int
    shot: int
    observations: list[Observation] = field(default_factory=list)  # recent ones (the stage prunes old)
    framing: Framing | None = None  # where the refinement box goes (from the full detector only)
    count: int = 0  # observations ever made
    misses: int = 0  # consecutive frames without an observation
    active: bool = True
    first: int = 0  # frame of the first observation
    #: measured motion into each recent frame (frame index -> previous frame → that frame), pruned with observations
    motions: dict[int, Motion] = field(default_factory=dict)
    estimate: np.ndarray | None = None  # (5, 2) landmarks at the latest frame (observed, or carried by motion)
    #: (5, 2) where a small face's refinement box goes: its first observation carried by the measured motion
    #: (None for a face big enough to place its box from its own landmarks, or after an unreliable motion)
    reference: np.ndarray | None = None
    meter: MotionMeter = field(default_factory=MotionMeter)  # measures the motion into each frame
    keyframe_hits: int = 0  # full detections matched to this track
    best_score: float = 0.0  # best full-detection score
    plausible: bool = True  # landmark layout of a face at the first detection
    confirmed: bool = False  # set by the stage once the evidence agrees; never unset

    @property
    def last(self) -> Observation:
        return self.observations[-1]

    def add(self, obs: Observation) -> None:
        self.observations.append(obs)
        self.count += 1
        self.misses = 0

    def predict(self, index: int) -> np.ndarray:
        """Landmarks expected at ``index``: the last few observations carried here by the measured motion
        and averaged (an average, not the last point, keeps the refinement box from chasing per-frame jitter,
        which would feed back into the next measurement); a straight-line fit where the motion is unreliable.
        """
        carried = []
        affine = IDENTITY
        k = index
        for obs in reversed(self.observations[-_PREDICT_FROM:]):
            while k > obs.index:
                link = self.motions.get(k)
                if link is None or not link.reliable:
                    break
                affine = compose(affine, link.affine)
                k -= 1
            if k != obs.index:
                break
            carried.append(apply(affine, obs.landmarks))
        if carried and (index in self.motions or self.last.index == index):
            return np.mean(carried, axis=0)
        return self._predict_linear(index)

    def placement(self, index: int) -> np.ndarray:
        """Landmarks the refinement box at ``index`` is placed around: the motion-carried reference of a small
        face, else the prediction."""
        return self.reference if self.reference is not None else self.predict(index)

    def follow(self, link: Motion | None) -> None:
        """Carry the reference into the next frame by the measured motion; drop it where that is unreliable
        (or the face has grown big enough to place its own box)."""
        if self.reference is None:
            return
        if link is None or not link.reliable or not _follows_motion(self.reference):
            self.reference = None
        else:
            self.reference = apply(link.affine, self.reference)

    def _predict_linear(self, index: int) -> np.ndarray:
        """A straight-line fit through the last few observations.

        A fit (not the last two points) keeps the refinement box from chasing per-frame jitter, which
        would feed back into the next measurement and make the track swing.
        """
        recent = [o for o in self.observations[-_PREDICT_FROM:] if index - o.index <= 2 * _PREDICT_FROM]
        if len(recent) < 3:
            return self.last.landmarks
        t = np.array([o.index - index for o in recent], np.float64)
        values = np.stack([o.landmarks.reshape(-1) for o in recent])
        design = np.stack([np.ones_like(t), t], axis=1)
        coef, *_ = np.linalg.lstsq(design, values, rcond=None)
        return coef[0].reshape(5, 2)


@dataclass
class Framing:
    """How a track's refinement box sits on its face, in the face's own axes and size.

    Taken from the full detector (its landmark stage's input box, where it has one) and updated only
    on key frames. Never from the refined landmarks themselves: ONet's answer for the face size follows
    the size of the box it is given, so feeding it back makes the box grow or shrink away.
    """

    scale: float  # eye-to-mouth distance (px)
    offset: np.ndarray  # box centre minus landmark centroid, (across, down) in face scales
    side: float  # box side in face scales
    roll: float = 0.0  # eye-line angle (radians) at the detection: refinement turns the face back to it

    @classmethod
    def from_detection(cls, landmarks: np.ndarray, anchor_box: np.ndarray | None) -> Framing:
        lm = np.asarray(landmarks, np.float64)
        scale = max(float(face_scale(lm)), 4.0)
        roll = _roll(lm)
        if anchor_box is None:
            return cls(scale, np.array([0.0, -BOX_LIFT]), BOX_SIDE, roll)
        right, down = _face_axes(lm)
        centre = 0.5 * (np.asarray(anchor_box[:2], np.float64) + np.asarray(anchor_box[2:], np.float64))
        delta = centre - lm.mean(axis=0)
        side = 0.5 * float(anchor_box[2] - anchor_box[0] + anchor_box[3] - anchor_box[1])
        return cls(scale, np.array([delta @ right, delta @ down]) / scale, side / scale, roll)

    def update(self, other: Framing) -> Framing:
        """Follow the detector's face size (zooms); keep the box placement of the track's first detection.

        Placement is the detector's noisiest output, and ONet's landmarks shift a little with it: a
        placement that changes on every key frame would put a small step into the track each time.
        """
        return Framing(self.scale + _SCALE_GAIN * (other.scale - self.scale), self.offset, self.side, self.roll)


def _follows_motion(landmarks: np.ndarray) -> bool:
    """Whether a face is small enough for its refinement box to follow its motion (see ``_FOLLOW_MOTION_BELOW``)."""
    box = face_box(landmarks)
    return float(max(box[2] - box[0], box[3] - box[1])) < _FOLLOW_MOTION_BELOW


def _roll(landmarks: np.ndarray) -> float:
    eyes = np.asarray(landmarks, np.float64)[1] - np.asarray(landmarks, np.float64)[0]
    return float(np.arctan2(eyes[1], eyes[0]))


def _face_axes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    eyes = 0.5 * (lm[0] + lm[1])
    mouth = 0.5 * (lm[3] + lm[4])
    down = (mouth - eyes) / max(float(np.linalg.norm(mouth - eyes)), 1e-6)
    return np.array([-down[1], down[0]]), down


def canonical_box(landmarks: np.ndarray, framing: Framing | None = None) -> np.ndarray:
    """Square box (x0, y0, x1, y1) placed around 5 landmarks as ``framing`` says (default: a fixed rule)."""
    lm = np.asarray(landmarks, np.float64)
    if framing is None:
        framing = Framing.from_detection(lm, None)
    right, down = _face_axes(lm)
    centre = lm.mean(axis=0) + framing.scale * (framing.offset[0] * right + framing.offset[1] * down)
    half = 0.5 * framing.side * framing.scale
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (N, 4) and (M, 4) boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def association_cost(track_landmarks: np.ndarray, track_boxes: np.ndarray, detections: Detections) -> np.ndarray:
    """(tracks × detections) cost: (1 − IoU) + mean landmark distance in face scales; inf where gated out."""
    if len(track_landmarks) == 0 or len(detections) == 0:
        return np.zeros((len(track_landmarks), len(detections)))
    iou = box_iou(track_boxes, detections.boxes)
    scale = np.maximum(face_scale(track_landmarks), 4.0)
    dist = np.linalg.norm(track_landmarks[:, None] - detections.landmarks[None].astype(np.float64), axis=-1).mean(-1)
    cost = (1.0 - iou) + dist / scale[:, None]
    return np.where((iou > 0.1) & (cost < _MATCH_GATE + 1.0) & (dist < scale[:, None]), cost, np.inf)


def hungarian(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one pairs, leaving out pairs whose cost is infinite."""
    if cost.size == 0:
        return []
    finite = np.isfinite(cost)
    if not finite.any():
        return []
    big = np.where(finite, cost, cost[finite].max() * 10 + 1e6)
    rows, cols = linear_sum_assignment(big)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if finite[r, c]]


class Tracker:
    """Turns frames into per-track observations; ``update`` once per frame, in order."""

    def __init__(self, detector: Detector, config: FacesConfig):
        self.detector = detector
        self.config = config
        self.tracks: list[Track] = []
        self.finished: list[Track] = []  # ended tracks the stage has not collected yet
        self.detector_calls = 0
        self.skipped_faces = 0
        self.detector_region_calls = 0  # second looks at new candidates (the detector on a small region)
        self.rejected_candidates = 0  # detections that did not look like a face (layout)
        self.vetoed_cuts = 0  # content-detector cuts the faces' motion showed to be one shot
        self.shot_starts: list[int] = []  # first frame of each shot (index = shot number)
        self._next_id = 0
        self._shot = 0
        self._last_keyframe: int | None = None
        self._redetect = False
        self._fine_sweep = 0  # key frames since the shot's first: which band of the small-face pass is next
        self._previous: tuple[int, np.ndarray] | None = None  # last frame seen (for the motion)

    # -- per frame --------------------------------------------------------------------------------

    def update(self, index: int, image: np.ndarray, cut: bool = False) -> bool:
        """Track the faces into frame ``index``; returns whether it starts a new shot.

        A reported ``cut`` is checked against the faces' measured motion first: where most tracked faces are
        followed into this frame by the pixels (a fast pan trips the content detector), the shot goes on.
        """
        active = [t for t in self.tracks if t.active]
        self._measure_motion(index, image, active)
        if cut and active:
            followed = sum(1 for t in active if index in t.motions and t.motions[index].reliable)
            if followed >= max(1.0, _CUT_VETO * len(active)):
                cut = False
                self.vetoed_cuts += 1
        if cut:
            for track in active:
                track.motions.pop(index, None)
            self._end_all()
            self._shot += 1
            self._previous = None
            self._fine_sweep = 0
        if not self.shot_starts or cut:
            self.shot_starts.append(index)
        keyframe = (
            cut
            or self._redetect
            or self._last_keyframe is None
            or index - self._last_keyframe >= max(1, self.config.keyframe_interval)
        )
        self._redetect = False
        active = [t for t in self.tracks if t.active]
        refined = self._refine_tracks(index, image, active)
        if keyframe:
            self._last_keyframe = index
            self._keyframe(index, image, active, refined)
        for track in active:
            obs = refined.get(track.id)
            if obs is not None:
                track.add(obs)
                if track.reference is None and _follows_motion(obs.landmarks):
                    track.reference = obs.landmarks
            young = not track.confirmed and index - track.first == _CONFIRM_AFTER
            if young and not keyframe and track.last.index == index:
                self._second_look(image, track)
        self._drop_duplicates(index)
        for track in [t for t in self.tracks if t.active]:
            if track.last.index == index:
                track.estimate = track.last.landmarks
                continue
            link = track.motions.get(index)
            if track.estimate is not None and link is not None and link.reliable:
                track.estimate = apply(link.affine, track.estimate)
            track.misses += 1
            if track.misses == 2:
                self._redetect = True  # lost: look again with the full detector on the next frame
            if track.misses > self.config.max_gap:
                self._end(track)
        self._previous = (index, image)
        return cut

    def _second_look(self, image: np.ndarray, track: Track) -> None:
        """A new candidate's confirmation: the full detector on the region around it, a few frames after it
        was found (a cheap independent look; a hand or a shirt fold rarely passes twice)."""
        box = track.last.box
        side = float(max(box[2] - box[0], box[3] - box[1]))
        height, width = image.shape[:2]
        x0, y0 = int(max(box[0] - side, 0)), int(max(box[1] - side, 0))
        x1, y1 = int(min(box[2] + side, width)), int(min(box[3] + side, height))
        if x1 - x0 < 12 or y1 - y0 < 12:
            return
        self.detector_region_calls += 1
        region = image[y0:y1, x0:x1]
        # a big face is looked at shrunk to about ``_LOOK_SIDE`` px, still finer than the coarse pass saw it: the
        # pyramid's resizes of a 4K face's full-size region cost ~18 ms a look
        shrink = min(1.0, _LOOK_SIDE / max(side, 1.0))
        if shrink < 1.0:
            size = (max(12, round((x1 - x0) * shrink)), max(12, round((y1 - y0) * shrink)))
            region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
            shrink = size[0] / (x1 - x0)
        found = self.detector.detect(region, min_size=max(12, int(0.5 * side * shrink)))
        if len(found) == 0:
            return
        boxes = found.boxes / shrink + np.array([x0, y0, x0, y0], np.float32)
        iou = box_iou(box, boxes)[0]
        best = int(np.argmax(iou))
        if iou[best] > 0.3 and found.scores[best] >= self.config.score_threshold:
            track.keyframe_hits += 1
            track.best_score = max(track.best_score, float(found.scores[best]))

    def _measure_motion(self, index: int, image: np.ndarray, tracks: list[Track]) -> None:
        """Each track's motion from the previous frame into this one (none on a shot's first frame)."""
        if self._previous is None or self._previous[0] != index - 1:
            return
        previous = self._previous[1]
        for track in tracks:
            estimate = track.estimate if track.estimate is not None else track.last.landmarks
            track.motions[index] = track.meter.measure(index, previous, image, face_box(estimate))
            track.follow(track.motions[index])

    def _refine_tracks(self, index: int, image: np.ndarray, tracks: list[Track]) -> dict[int, Observation]:
        if not tracks:
            return {}
        predicted = np.stack([t.placement(index) for t in tracks])
        found = self._refine(image, predicted, [t.framing for t in tracks])
        out = {}
        for k, track in enumerate(tracks):
            obs = self._accept(index, found, k, predicted[k])
            if obs is not None:
                out[track.id] = obs
        return out

    def _refine(self, image: np.ndarray, landmarks: np.ndarray, framings: list[Framing | None]) -> Detections:
        """Landmarks measured in canonical boxes around ``landmarks`` (N, 5, 2); score 0 where none."""
        boxes = np.stack([canonical_box(lm, f) for lm, f in zip(landmarks, framings, strict=True)])
        # the face turned back to the roll it had when detected: ONet's answer (and its bias) stays the same
        # while the face rolls, and a face that never rolls is looked at as the detector looked at it
        angles = np.array(
            [_roll(lm) - (f.roll if f is not None else _roll(lm)) for lm, f in zip(landmarks, framings, strict=True)]
        )
        # soft threshold (continuous): a face within a few degrees of its reference roll is looked at as it is
        angles = np.sign(angles) * np.maximum(np.abs(angles) - _ROLL_FREE, 0.0)
        result = self.detector.refine(image, boxes, angles)
        if result is None:
            result = self._refine_by_detection(image, boxes)
        return result

    def _refine_by_detection(self, image: np.ndarray, boxes: np.ndarray) -> Detections:
        """For detectors without a landmark stage: run the detector on a crop around each box."""
        height, width = image.shape[:2]
        out = Detections(
            np.zeros((len(boxes), 4), np.float32),
            np.zeros(len(boxes), np.float32),
            np.zeros((len(boxes), 5, 2), np.float32),
        )
        for k, box in enumerate(boxes):
            side = box[2] - box[0]
            x0, y0 = int(max(box[0] - side * 0.5, 0)), int(max(box[1] - side * 0.5, 0))
            x1, y1 = int(min(box[2] + side * 0.5, width)), int(min(box[3] + side * 0.5, height))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            found = self.detector.detect(image[y0:y1, x0:x1], min_size=int(side * 0.5))
            if len(found) == 0:
                continue
            shift = np.array([x0, y0], np.float32)
            centres = 0.5 * (found.boxes[:, :2] + found.boxes[:, 2:]) + shift
            best = int(np.argmin(np.linalg.norm(centres - 0.5 * (box[:2] + box[2:]), axis=1)))
            out.boxes[k] = found.boxes[best] + np.tile(shift, 2)
            out.scores[k] = found.scores[best]
            out.landmarks[k] = found.landmarks[best] + shift
        return out

    def _accept(self, index: int, found: Detections, k: int, expected: np.ndarray) -> Observation | None:
        """A refinement result, if it is a face and plausibly the same one."""
        if found.scores[k] < min(self.config.score_threshold, _REFINE_THRESHOLD):
            return None
        lm = found.landmarks[k].astype(np.float64)
        scale_expected = max(float(face_scale(expected)), 4.0)
        ratio = float(face_scale(lm)) / scale_expected
        moved = float(np.linalg.norm(lm.mean(0) - expected.mean(0))) / scale_expected
        if not (0.6 < ratio < 1.6) or moved > 0.6:
            return None
        spread = 0.0 if found.spread is None else float(found.spread[k])
        return Observation(index, lm, face_box(lm), float(found.scores[k]), spread)

    # -- key frames -------------------------------------------------------------------------------

    def _keyframe(self, index: int, image: np.ndarray, active: list[Track], refined: dict[int, Observation]) -> None:
        detections = self._detect(image)
        track_lm = (
            np.stack([refined[t.id].landmarks if t.id in refined else t.predict(index) for t in active])
            if active
            else np.zeros((0, 5, 2))
        )
        track_boxes = (
            np.stack([refined[t.id].box if t.id in refined else face_box(track_lm[k]) for k, t in enumerate(active)])
            if active
            else np.zeros((0, 4))
        )
        pairs = hungarian(association_cost(track_lm, track_boxes, detections))
        matched_dets = {d for _, d in pairs}
        # re-anchor tracks the refinement lost but the detector found
        for t_idx, d_idx in pairs:
            track = active[t_idx]
            track.keyframe_hits += 1
            track.best_score = max(track.best_score, float(detections.scores[d_idx]))
            detected = _framing_of(detections, d_idx)
            track.framing = detected if track.framing is None else track.framing.update(detected)
            if track.id not in refined:
                obs = self._anchor(index, image, detections, d_idx, track.framing)
                if obs is not None:
                    refined[track.id] = obs
                    track.reference = obs.landmarks if _follows_motion(obs.landmarks) else None
        # new faces
        taken = [o.box for o in refined.values()]
        for d_idx in range(len(detections)):
            if d_idx in matched_dets:
                continue
            lm = detections.landmarks[d_idx]
            side = float(detections.boxes[d_idx, 2] - detections.boxes[d_idx, 0])
            if side < self.config.min_face or frontalness(lm) < self.config.min_frontal:
                self.skipped_faces += 1
                continue
            if not plausible_face(lm):
                self.rejected_candidates += 1
                continue
            if taken and box_iou(detections.boxes[d_idx], np.stack(taken)).max() > _DUPLICATE_IOU:
                continue
            framing = _framing_of(detections, d_idx)
            obs = self._anchor(index, image, detections, d_idx, framing)
            if obs is None:
                continue
            framing.roll = _roll(obs.landmarks)  # the refinement's own roll: what later looks are turned back to
            track = Track(id=self._next_id, shot=self._shot, framing=framing, first=index)
            track.keyframe_hits = 1
            track.best_score = float(detections.scores[d_idx])
            track.estimate = obs.landmarks
            track.reference = obs.landmarks if _follows_motion(obs.landmarks) else None
            self._next_id += 1
            track.add(obs)
            self.tracks.append(track)
            taken.append(obs.box)

    def _detect(self, image: np.ndarray) -> Detections:
        """Full detection wherever a face of ``min_face`` source px could be; frame coordinates out.

        A coarse pass sees a copy whose long side is about ``detect_size`` (the big faces); where that copy
        would shrink a ``min_face`` face below what the detector can see, a fine pass looks for the small
        faces only, at source resolution (or the least upscale the detector needs): MTCNN by its own image
        pyramid cut to the small levels, other detectors on overlapping tiles.
        """
        self.detector_calls += 1
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
        frame (bands overlap by 1.5 times the largest face), so the pass costs at most about ``_FINE_BUDGET``
        times the coarse one and sweeps the frame every few key frames.
        """
        smallest = max(smallest, float(_COARSE_MIN))  # below the detector's own minimum: not worth restoring
        height = image.shape[0]
        bands = max(1, int(np.ceil(cost_ratio / _FINE_BUDGET)))
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

    def _anchor(
        self, index: int, image: np.ndarray, detections: Detections, d_idx: int, framing: Framing
    ) -> Observation | None:
        """Observation of a detected face measured the canonical way (so it matches refined frames)."""
        lm = detections.landmarks[d_idx].astype(np.float64)
        obs = None
        for _ in range(2):  # second pass: box from the refined landmarks, as on the following frames
            candidate = self._accept(index, self._refine(image, lm[None], [framing]), 0, lm)
            if candidate is None:
                break
            obs, lm = candidate, candidate.landmarks
        if obs is not None:
            return obs
        return Observation(index, lm, detections.boxes[d_idx].astype(np.float64), float(detections.scores[d_idx]))

    # -- bookkeeping ------------------------------------------------------------------------------

    def _drop_duplicates(self, index: int) -> None:
        """Two tracks on one face (a re-detection that slipped the matching): the younger one ends."""
        current = [t for t in self.tracks if t.active and t.last.index == index]
        current.sort(key=lambda t: (-t.count, t.id))
        kept: list[Track] = []
        for track in current:
            if kept and box_iou(track.last.box, np.stack([k.last.box for k in kept])).max() > _DUPLICATE_IOU:
                track.observations.pop()
                track.count -= 1
                self._end(track)
                continue
            kept.append(track)

    def _end(self, track: Track) -> None:
        track.active = False
        self.tracks.remove(track)
        self.finished.append(track)

    def _end_all(self) -> None:
        for track in list(self.tracks):
            self._end(track)


def _framing_of(detections: Detections, d_idx: int) -> Framing:
    anchor = None if detections.anchor_boxes is None else detections.anchor_boxes[d_idx]
    return Framing.from_detection(detections.landmarks[d_idx], anchor)


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
