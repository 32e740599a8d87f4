"""Persistent face tracks: full detection on key frames, cheap landmark refinement in between.

Every observation of a tracked face is made the same way: the detector's landmark stage (MTCNN's
ONet) run on a box placed by a fixed rule around the face's predicted landmarks (see
``framing.canonical_box``). Because the crop is framed the same way on key frames and in between, the
landmarks carry no step every N frames, and their remaining jitter is the kind the smoother removes.
The full detector (``keyframe_detection``) only finds new faces and re-anchors faces the refinement lost.
Detections are matched to tracks by IoU plus landmark distance with the Hungarian method (``association``).

**Sync frames** bound what the tracker remembers, so that a run which starts a little earlier (a preview, a
batch segment, a ``--start``) finds the same faces as the whole run from there on. On a sync frame
(``FaceStage`` marks one every ``faces.sync_seconds`` of source time) the tracks stop steering and the faces
start afresh from that frame's full detection, as on a cut, except that a new track on a face a track was
following takes that track's id over. The old track goes on as a *follower* for ``follow_frames``: refined on
its own, it steers nothing (no key frame, cut, birth or match depends on it), and the stage blends from its
landmarks into the new track's over those frames, so the seam moves nothing at once. A followed face the sync
frame's detection misses (a blink of the detector, a face turned too far to start a track) goes on as a
follower too, an *orphan*, given out until a new track takes its face over or ``follow_frames`` pass. So the
steering tracks depend on no frame before the last sync frame, and the followers on none before the one before.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor

import numpy as np

from gpen_video.config import FacesConfig
from gpen_video.faces.association import association_cost, box_iou, hungarian
from gpen_video.faces.detectors.base import Detector
from gpen_video.faces.framing import Framing, canonical_box, follows_motion, framing_of, region_around, roll_angle
from gpen_video.faces.keyframe_detection import KeyframeDetection, look_around
from gpen_video.faces.motion import Motion, apply
from gpen_video.faces.track import Observation, Track
from gpen_video.faces.types import Detections, face_box, face_scale, frontalness, plausible_face

log = logging.getLogger(__name__)

_DUPLICATE_IOU = 0.5
#: track ids per sync period: the tracks started in period p are named PERIOD_IDS * p + 0, 1, 2 ...
PERIOD_IDS = 1000
#: where ids go in a period that starts more than ``PERIOD_IDS`` tracks
OVERFLOW_IDS = 1_000_000_000
_REFINE_THRESHOLD = 0.5  # a face already tracked needs less evidence than a new one
_CONFIRM_AFTER = 2  # a new candidate's second look: the detector on its region this many frames after it appeared
_ROLL_FREE = np.radians(3.0)  # roll away from the detected one (radians) that the refinement leaves as it is
_CUT_VETO = 2.0 / 3.0  # share of tracked faces followed by their motion that overrules a content cut
_FOLLOW_KEYFRAMES = 2  # key-frame intervals a follower goes on for (an orphan waits, a take-over blends)
_HAND_OVER_IOU = 0.3  # box overlap at which a new track takes an orphan's face over
_DRIFTED = 0.25  # mean landmark distance (face scales) from a matched detection at which a track is re-anchored


def follow_frames(config: FacesConfig) -> int:
    """Frames a follower goes on for (``Tracker``): an orphan's wait for a new track, a take-over's blend."""
    return _FOLLOW_KEYFRAMES * max(1, config.keyframe_interval)


class Tracker:
    """Turns frames into per-track observations; ``update`` once per frame, in order."""

    def __init__(self, detector: Detector, config: FacesConfig, pool: Executor | None = None):
        self.detector = detector
        self.config = config
        self._each = pool.map if pool is not None else map  # per-face work, results in order
        self.detection = KeyframeDetection(detector, config, pool)
        self.tracks: list[Track] = []
        self.finished: list[Track] = []  # ended tracks the stage has not collected yet
        self.detector_calls = 0
        self.skipped_faces = 0
        self.detector_region_calls = 0  # second looks at new candidates (the detector on a small region)
        self.rejected_candidates = 0  # detections that did not look like a face (layout)
        self.vetoed_cuts = 0  # content-detector cuts the faces' motion showed to be one shot
        self.orphaned = 0  # followed faces a sync frame's detection missed (followed on as orphans)
        self.orphans_taken_over = 0  # of those, the ones a new track took over
        self.shot_starts: list[int] = []  # first frame of each shot (index = shot number)
        self.period: int | None = None  # the sync period of the frame being tracked (``FaceStage`` sets it)
        self._born = 0  # tracks started in this sync period so far (those that took a track over too)
        self._overflow = 0  # tracks named past ``PERIOD_IDS`` in their period
        self._shot = 0
        self._last_keyframe: int | None = None
        self._redetect = False
        self._previous: tuple[int, np.ndarray] | None = None  # last frame seen (for the motion)

    # -- per frame --------------------------------------------------------------------------------

    def update(
        self, index: int, image: np.ndarray, cut: bool = False, sync: bool = False, period: int | None = None
    ) -> bool:
        """Track the faces into frame ``index``; returns whether it starts a new shot. ``sync``: a sync frame;
        ``period``: the sync period it falls in (None: no sync frames), which the new tracks' ids are named in.

        A reported ``cut`` is checked against the faces' measured motion first: where most tracked faces are
        followed into this frame by the pixels (a fast pan trips the content detector), the shot goes on.
        """
        if period != self.period:
            self.period, self._born = period, 0
        for track in [t for t in self.tracks if t.stop is not None and t.stop <= index]:
            self._end(track, until=index)
        self._measure_motion(index, image, list(self.tracks))
        cut = cut and not self._cut_vetoed(index, self._steering())
        if cut:
            self._new_shot(index, list(self.tracks))
        if not self.shot_starts or cut:
            self.shot_starts.append(index)
        if sync and not cut and self.tracks:
            self._sync(index, image)
        else:
            if sync:
                self.detection.new_shot()
            self._follow(index, image, keyframe=cut or sync or self._redetect or self._keyframe_due(index))
        self._redetect = False
        self._drop_duplicates(index)
        self._carry_unobserved(index)
        self._previous = (index, image)
        return cut

    def _steering(self) -> list[Track]:
        """The tracks that steer the tracker (key frames, cuts, births, matches): every active one but followers."""
        return [t for t in self.tracks if t.active and t.steering]

    def _follow(self, index: int, image: np.ndarray, keyframe: bool) -> None:
        """Refine every track into this frame; on a key frame, detect, re-anchor and start new tracks (which take
        over the orphans on their faces)."""
        steering = self._steering()
        followers = [t for t in self.tracks if not t.steering]
        resting = {t.id for t in steering if self._rests(t, index, keyframe)}
        refined = self._refine_tracks(index, image, [t for t in steering if t.id not in resting])
        for track in steering:
            if track.id in resting:
                track.rested.add(index)
        self._observe_followers(index, image, followers)
        born: list[Track] = []
        if keyframe:
            self._last_keyframe = index
            born = self._keyframe(index, image, steering, refined)
        self._observe(index, image, steering, refined, keyframe)
        self._hand_over(index, born, [t for t in followers if t.successor is None])
        self._name(born)

    def _rests(self, track: Track, index: int, keyframe: bool) -> bool:
        """Whether ``track``'s refinement is left out of frame ``index`` (``faces.refine_every``): a confirmed face,
        observed within the last N - 1 frames and followed here by a reliable motion, off key frames."""
        every = self.config.refine_every if self.config.smooth else 1
        if every <= 1 or keyframe or not track.confirmed or index - track.last.index >= every:
            return False
        link = track.motions.get(index)
        return link is not None and link.reliable

    def _observe_followers(self, index: int, image: np.ndarray, followers: list[Track]) -> None:
        """The followers refined apart from the steering tracks (whose batch is then the same without them)."""
        refined = self._refine_tracks(index, image, followers)
        for track in followers:
            if track.id in refined:
                track.add(refined[track.id])

    def _sync(self, index: int, image: np.ndarray) -> None:
        """A sync frame: every track ends; new ones start from this frame's detection, and each one on a face a
        track was following takes that track over (its id, and the stage's smoothing across the seam). A track
        whose face no new track takes runs on as an orphan; the followers of the last sync frame end here."""
        retiring = self._steering()
        for track in [t for t in self.tracks if not t.steering]:
            self._end(track, until=index)
        self.detection.new_shot()
        self._last_keyframe = index
        self._observe_followers(index, image, retiring)  # where the ending tracks are: the take-over, the blend
        self.detector_calls += 1
        born = self._start_tracks(index, image, self.detection.detect(image), set(), {})
        if retiring and born:
            track_lm = np.stack([t.last.landmarks if t.last.index == index else t.predict(index) for t in retiring])
            track_boxes = np.stack([face_box(lm) for lm in track_lm])
            found = Detections(
                np.stack([t.last.box for t in born]).astype(np.float32),
                np.array([t.last.score for t in born], np.float32),
                np.stack([t.last.landmarks for t in born]).astype(np.float32),
            )
            for t_idx, b_idx in hungarian(association_cost(track_lm, track_boxes, found)):
                self._take_over(retiring[t_idx], born[b_idx], index)
        for track in retiring:
            if track.successor is None:  # no new track on its face: an orphan
                track.stop = index + follow_frames(self.config)
                self.orphaned += 1
        self._name(born)

    def _hand_over(self, index: int, born: list[Track], orphans: list[Track]) -> None:
        """New tracks on an orphan's face take it over."""
        for track in born:
            live = [o for o in orphans if o.active and o.successor is None]
            if not live:
                return
            overlap = box_iou(track.last.box, np.stack([_where_now(o, index) for o in live]))[0]
            best = int(np.argmax(overlap))
            if overlap[best] > _HAND_OVER_IOU:
                self._take_over(live[best], track, index)
                self.orphans_taken_over += 1

    def _take_over(self, old: Track, new: Track, index: int) -> None:
        """``new`` gives ``old``'s face out from ``index`` on, under its id; ``old`` follows on for the blend."""
        new.predecessor, old.successor = old, new
        new.id = old.id
        old.until = index
        old.stop = index + follow_frames(self.config)

    def _name(self, born: list[Track]) -> None:
        """Ids for the new tracks that took no track over: ``PERIOD_IDS`` × their sync period + the order they
        started in it (tracks that took one over counted too). A track's id then depends only on the frames since
        its period's sync frame, so a preview, a range or a batch segment that warms up from there names it as
        the whole run does (a face already followed at that sync frame keeps the id it had before it there, which
        a run starting later cannot know). Without sync frames, ids count from 0 over the whole run."""
        for track in born:
            ordinal, self._born = self._born, self._born + 1
            if track.id >= 0:
                continue
            if ordinal < PERIOD_IDS and (self.period or 0) >= 0:
                track.id = PERIOD_IDS * (self.period or 0) + ordinal
            else:  # a period with more births than ids, or before the stream's time 0: numbers no period uses
                track.id, self._overflow = OVERFLOW_IDS + self._overflow, self._overflow + 1

    def _cut_vetoed(self, index: int, active: list[Track]) -> bool:
        """Whether most tracked faces are followed into frame ``index`` by their measured motion (one shot)."""
        if not active:
            return False
        followed = sum(1 for t in active if index in t.motions and t.motions[index].reliable)
        if followed >= max(1.0, _CUT_VETO * len(active)):
            self.vetoed_cuts += 1
            return True
        return False

    def _new_shot(self, index: int, active: list[Track]) -> None:
        """A cut at ``index``: every track ends, and no motion links the new shot to the old one."""
        for track in active:
            track.motions.pop(index, None)
        self._end_all()
        self._shot += 1
        self._previous = None
        self.detection.new_shot()

    def _keyframe_due(self, index: int) -> bool:
        return self._last_keyframe is None or index - self._last_keyframe >= max(1, self.config.keyframe_interval)

    def _observe(
        self, index: int, image: np.ndarray, active: list[Track], refined: dict[int, Observation], keyframe: bool
    ) -> None:
        """Add each track's observation of this frame; a candidate's second look once it is old enough."""
        for track in active:
            obs = refined.get(track.id)
            if obs is not None:
                track.add(obs)
                if track.reference is None and follows_motion(obs.landmarks):
                    track.reference = obs.landmarks
            young = not track.confirmed and index - track.first == _CONFIRM_AFTER
            if young and not keyframe and track.last.index == index:
                self._second_look(image, track)

    def _carry_unobserved(self, index: int) -> None:
        """Tracks not observed in this frame: the estimate carried by the motion, and a miss counted."""
        for track in [t for t in self.tracks if t.active]:
            if track.last.index == index:
                track.estimate = track.last.landmarks
                continue
            link = track.motions.get(index)
            if track.estimate is not None and link is not None and link.reliable:
                track.estimate = apply(link.affine, track.estimate)
            if index in track.rested:  # left out on purpose, and followed: not a miss
                continue
            track.misses += 1
            if track.misses == 2 and track.steering:
                self._redetect = True  # lost: look again with the full detector on the next frame
            if track.misses > self.config.max_gap:
                self._end(track)

    def _second_look(self, image: np.ndarray, track: Track) -> None:
        """A new candidate's confirmation: the full detector on the region around it, a few frames after it
        was found (a cheap independent look; a hand or a shirt fold rarely passes twice)."""
        self.detector_region_calls += 1
        found = look_around(self.detector, image, track.last.box)
        if len(found) and found.scores[0] >= self.config.score_threshold:
            track.keyframe_hits += 1
            track.best_score = max(track.best_score, float(found.scores[0]))

    def _measure_motion(self, index: int, image: np.ndarray, tracks: list[Track]) -> None:
        """Each track's motion from the previous frame into this one (none on a shot's first frame)."""
        if self._previous is None or self._previous[0] != index - 1:
            return
        previous = self._previous[1]

        def measure(track: Track) -> Motion:
            estimate = track.estimate if track.estimate is not None else track.last.landmarks
            return track.meter.measure(index, previous, image, face_box(estimate))

        for track, motion in zip(tracks, list(self._each(measure, tracks)), strict=True):
            track.motions[index] = motion
            track.follow(motion)

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
            [
                roll_angle(lm) - (f.roll if f is not None else roll_angle(lm))
                for lm, f in zip(landmarks, framings, strict=True)
            ]
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
            x0, y0, x1, y1 = region_around(box, side * 0.5, width, height)
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

    def _keyframe(
        self, index: int, image: np.ndarray, active: list[Track], refined: dict[int, Observation]
    ) -> list[Track]:
        """Detect; re-anchor the tracks matched; the tracks started on the rest (still without ids: ``_name``)."""
        self.detector_calls += 1
        # where each track is: refined into this frame, or carried there by its motion
        tracked = [refined[t.id].box if t.id in refined else _where_now(t, index) for t in active]
        detections = self.detection.detect(image, np.array(tracked).reshape(-1, 4))
        pairs = self._match(index, active, refined, detections)
        self._reanchor(index, image, active, refined, detections, pairs)
        return self._start_tracks(index, image, detections, {d for _, d in pairs}, refined)

    def _match(
        self, index: int, active: list[Track], refined: dict[int, Observation], detections: Detections
    ) -> list[tuple[int, int]]:
        """(track, detection) pairs: each track where it was refined to, or where it is predicted."""
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
        return hungarian(association_cost(track_lm, track_boxes, detections))

    def _reanchor(
        self,
        index: int,
        image: np.ndarray,
        active: list[Track],
        refined: dict[int, Observation],
        detections: Detections,
        pairs: list[tuple[int, int]],
    ) -> None:
        """Matched tracks follow the detector's face size; those the refinement lost, or let drift off the face the
        detector sees (a refinement box placed off its face feeds its own answer back), are measured again."""
        for t_idx, d_idx in pairs:
            track = active[t_idx]
            track.keyframe_hits += 1
            track.best_score = max(track.best_score, float(detections.scores[d_idx]))
            detected = framing_of(detections, d_idx)
            drifted = track.id in refined and _apart(refined[track.id].landmarks, detections.landmarks[d_idx])
            if track.framing is None or drifted:
                track.framing = detected
            else:
                track.framing = track.framing.update(detected)
            if track.id not in refined or drifted:
                obs = self._anchor(index, image, detections, d_idx, track.framing)
                if obs is not None:
                    refined[track.id] = obs
                    track.reference = obs.landmarks if follows_motion(obs.landmarks) else None

    def _start_tracks(
        self,
        index: int,
        image: np.ndarray,
        detections: Detections,
        matched: set[int],
        refined: dict[int, Observation],
    ) -> list[Track]:
        """New faces: unmatched detections big, frontal and face-like enough, not on a face already tracked (their
        ids come later: ``_name``)."""
        taken = [o.box for o in refined.values()]
        born: list[Track] = []
        for d_idx in range(len(detections)):
            if d_idx in matched:
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
            framing = framing_of(detections, d_idx)
            obs = self._anchor(index, image, detections, d_idx, framing)
            if obs is None:
                continue
            framing.roll = roll_angle(obs.landmarks)  # the refinement's own roll: what later looks are turned back to
            track = Track(id=-1, shot=self._shot, framing=framing, first=index, rank=len(born))
            track.keyframe_hits = 1
            track.best_score = float(detections.scores[d_idx])
            track.estimate = obs.landmarks
            track.reference = obs.landmarks if follows_motion(obs.landmarks) else None
            track.add(obs)
            self.tracks.append(track)
            born.append(track)
            taken.append(obs.box)
        return born

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
        """Two tracks on one face (a re-detection that slipped the matching): the younger one ends; an orphan
        gives way to any steering track (it ends where that one is)."""
        # a track taken over follows on beside its successor: not a duplicate
        current = [t for t in self.tracks if t.active and t.last.index == index and t.successor is None]
        # the order depends on nothing but the frames since the last sync frame (ids do: taken over)
        current.sort(key=lambda t: (not t.steering, -t.count, t.first, t.rank))
        kept: list[Track] = []
        for track in current:
            if kept and box_iou(track.last.box, np.stack([k.last.box for k in kept])).max() > _DUPLICATE_IOU:
                track.observations.pop()
                track.count -= 1
                self._end(track, until=None if track.steering else index)
                continue
            kept.append(track)

    def _end(self, track: Track, until: int | None = None) -> None:
        """``track`` ends; ``until``: nothing from that frame on is given out as its (a follower's last frame)."""
        track.active = False
        if until is not None:
            track.until = until if track.until is None else min(track.until, until)
        self.tracks.remove(track)
        self.finished.append(track)

    def _end_all(self) -> None:
        for track in list(self.tracks):
            self._end(track)


def _where_now(track: Track, index: int) -> np.ndarray:
    """``track``'s box in frame ``index``: observed there, or carried by the motion so far."""
    if track.last.index == index:
        return track.last.box
    return face_box(track.estimate if track.estimate is not None else track.last.landmarks)


def _apart(refined: np.ndarray, detected: np.ndarray) -> bool:
    """Whether a track's refined landmarks sit off the face its matched detection sees (``_DRIFTED``)."""
    distance = float(np.linalg.norm(np.asarray(refined, np.float64) - detected, axis=-1).mean())
    return distance > _DRIFTED * max(float(face_scale(detected)), 4.0)
