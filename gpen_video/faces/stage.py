"""The faces stage: frames in, final per-frame faces out, a fixed number of frames later.

``push`` runs scene-cut detection and the tracker (which also measures each face's motion from the
pixels) on each frame as it arrives; a frame is released once ``lookahead`` newer frames have been
seen, because only then are the future observations its smoothing, gap bridging and the candidates'
confirmation need known.

Smoothing is zero-phase in motion-compensated coordinates: every observation of the track in the
window ``t-W .. t+W`` is carried into frame ``t`` through the composed measured motion, and a robust
fit of those carried points (all estimates of the same thing: where the face is at ``t``) removes the
detector's noise while every real movement (sway, shake, zoom, roll, fast pans) passes through. The
carry stops at the first unreliable motion link, so the window shrinks there (blur, occlusion, too few
features) instead of lagging; there is no link across a cut. Frames without an observation are
bridged the same way, through the measured motion.

Memory stays flat: observations and motions older than the window are dropped as frames are released,
per-frame rows go to the optional tracks sink (``TracksFile``) as frames are released, and the stage
keeps only one summary per track.

Same frames, same faces, wherever a run starts: a frame whose source time crosses a multiple of
``faces.sync_seconds`` is a sync frame, where the tracker starts afresh (``Tracker``). So the faces of a frame
depend on no frame before ``warm_start`` of it, and a preview, a ``--start`` or a batch segment that decodes
from there (``warm_start``) gives the frames it emits the faces the whole run gives them.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from gpen_video.config import FacesConfig
from gpen_video.errors import ConfigError
from gpen_video.faces.detectors import create_detector
from gpen_video.faces.detectors.base import Detector
from gpen_video.faces.geometry import template_points, umeyama_similarity
from gpen_video.faces.motion import IDENTITY, Motion, apply, compose, invert
from gpen_video.faces.scenecut import SceneCutDetector
from gpen_video.faces.smoothing import local_linear
from gpen_video.faces.track import Observation, Track
from gpen_video.faces.tracker import _CONFIRM_AFTER, Tracker, follow_frames
from gpen_video.faces.tracks_file import TracksFile
from gpen_video.faces.types import (
    FacesSummary,
    FrameFaces,
    SmoothingSummary,
    TrackedFace,
    TrackSummary,
    face_box,
    face_scale,
)
from gpen_video.io.colour import to_8bit

log = logging.getLogger(__name__)

SMOOTH_TARGETS = ("points", "similarity")
_NOISE_FLOOR = 0.02  # of the face scale: residuals below this are never treated as outliers
_REFINE_MARGIN = 0.03  # the refinement's mean score may sit this far below ``confirm_score``
#: ONet scores a small face's upsampled crop lower (real 21-23 px faces of a 4K crowd: 0.88-0.92 on average
#: while their detections scored 0.997): the margin grows to ``_SMALL_MARGIN`` from ``_SMALL_FROM`` px down
#: to ``_SMALL_FULL``
_SMALL_MARGIN = 0.1
_SMALL_FROM = 48.0
_SMALL_FULL = 28.0  # landmark box side (px; about 1.1x the detector's) at and below which the whole margin applies
_FIT_DEGREE = 0  # carried observations all estimate the same point: a robust local mean


@dataclass
class _TrackTally:
    """Running per-track summary (what ``TrackSummary`` is made from)."""

    first: int
    last: int
    frames: int = 0
    score_sum: float = 0.0
    best_score: float = -1.0
    sample_frame: int = 0
    sample_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


def lookahead_frames(config: FacesConfig, context_frames: int = 0) -> int:
    """Frames ``FaceStage.push`` may hold back (a released frame is final): the smoothing window, a gap to bridge, the
    track length and the candidates' second look. Batch segments and ranges decode this far past their end, plus
    ``context_frames`` (``Config.context_frames``: a fused or protected frame waits for that many later frames)."""
    window = max(0, int(config.smooth_window)) if config.smooth else 0
    return max(window, config.max_gap + 1, config.min_track_length, _CONFIRM_AFTER + 1, 1) + context_frames


def sync_period(config: FacesConfig, seconds: float | None) -> int | None:
    """The sync period a frame at ``seconds`` (source time) falls in; None: no sync frames."""
    if config.sync_seconds <= 0 or seconds is None:
        return None
    return math.floor(seconds / config.sync_seconds)


@dataclass(frozen=True)
class WarmStart:
    """How far before its start a run decodes, so that the frames from there on get the whole run's faces.

    With sync frames every ``sync_seconds``, the faces of a frame depend on the frames since the sync frame at
    or before it, less ``settle_frames`` (the followers' time, which come from the sync frame before: an orphan
    follows on for ``follow_frames`` and, taken over at the last of them, blends into its successor for as many
    more; the steering tracks' smoothing reaches no further back than the sync frame), and on
    ``history_frames`` before that sync frame (its scene-cut decision). Without sync
    frames (``sync_seconds`` 0): ``fallback_frames`` (close, not exact: the tracker remembers the whole shot).
    """

    sync_seconds: float
    settle_frames: int
    history_frames: int
    fallback_frames: int

    def before(self, start: float, frame_seconds: float) -> float:
        """Source time to decode from for the frames from ``start`` (source seconds) on; ``frame_seconds``: a
        frame's duration, or a little more (more warm-up never changes what comes out)."""
        if self.sync_seconds <= 0:
            return start - self.fallback_frames * frame_seconds
        period = math.floor((start - self.settle_frames * frame_seconds) / self.sync_seconds)
        return period * self.sync_seconds - self.history_frames * frame_seconds


def warm_start(config: FacesConfig, context_frames: int = 0) -> WarmStart:
    """``config``'s ``WarmStart`` (what a preview, a ``--start`` and each batch segment decode before their start).
    ``context_frames`` (``Config.context_frames``): a fused or protected frame also needs that many frames before it,
    with the faces the whole run gives them, so the start is that much earlier."""
    reach = max(config.smooth_window if config.smooth else 0, config.max_gap + 1, 1)
    return WarmStart(
        sync_seconds=float(config.sync_seconds),
        settle_frames=2 * follow_frames(config) + 1 + context_frames,
        history_frames=SceneCutDetector.history_frames(config.min_scene_len) + 1,
        fallback_frames=reach + max(config.keyframe_interval, 8) + context_frames,
    )


class FaceStage:
    """Streaming: push frames in order; get back frames whose faces are final (delayed by the look-ahead window).

    ``tracks`` (optional) receives every released frame's faces (``TracksFile`` for ``--tracks``); the
    stage itself keeps no per-frame rows.
    """

    def __init__(
        self,
        config: FacesConfig,
        detector: Detector | None = None,
        tracks: TracksFile | None = None,
        workers: int = 1,
        detector_device: str | None = None,
    ):
        """``detector_device``: the torch device the detector's networks run on (None: the CPU)."""
        if config.smooth_target not in SMOOTH_TARGETS:
            raise ConfigError(
                f"unknown faces.smooth_target '{config.smooth_target}'; choose one of: {', '.join(SMOOTH_TARGETS)}"
            )
        self.config = config
        self.detector = detector or create_detector(
            config.detector,
            score_threshold=config.score_threshold,
            threads=config.detector_threads,
            device=detector_device,
        )
        # each face's motion and each look of a key frame on ``workers`` threads (OpenCV and ONNX Runtime release
        # the GIL); taken in order, so the faces are the same for any number
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="faces") if workers > 1 else None
        self.tracker = Tracker(self.detector, config, self.pool)
        self.scene_cuts = (
            SceneCutDetector(config.scene_threshold, config.min_scene_len) if config.scene_threshold > 0 else None
        )
        self.tracks_sink = tracks
        self._pending: deque[tuple[int, float | None, bool]] = deque()
        self._first_counted: int | None = None  # the first frame counted: the reports number frames from it
        self._frames = 0
        self._last_pushed = -1
        self._period: int | None = None  # the sync period of the last frame pushed
        self._extra_skipped = 0
        self._rejected_tracks = 0
        self._tallies: dict[int, _TrackTally] = {}
        self._last_emitted: dict[int, list[tuple[int, np.ndarray]]] = {}
        self._jitter_raw = [0.0, 0]
        self._jitter_smooth = [0.0, 0]
        self._raw_centres: dict[int, deque[int]] = {}  # track -> the last frames whose raw jitter was counted
        self._agreement_raw = [0.0, 0]
        self._agreement_smooth = [0.0, 0]

    @property
    def window(self) -> int:
        return max(0, int(self.config.smooth_window)) if self.config.smooth else 0

    @property
    def reach(self) -> int:
        """Frames either side a released frame may use: the smoothing window, or a gap to bridge."""
        return max(self.window, self.config.max_gap + 1)

    @property
    def lookahead(self) -> int:
        return lookahead_frames(self.config)

    def push(
        self, index: int, image: np.ndarray, pts_seconds: float | None = None, counted: bool = True
    ) -> list[FrameFaces]:
        """Frame ``index`` in; the frames now final out. ``counted`` False: a frame a range or a segment decodes
        around the frames it writes (warm-up, look-ahead): tracked, its faces given out, but not in the summaries,
        the metrics or the tracks file, which number frames from the first counted one."""
        if image.dtype != np.uint8:
            image = to_8bit(image) if image.dtype == np.uint16 else image.astype(np.uint8)
        cut = False
        if self.scene_cuts is not None:
            cut = self.scene_cuts.is_cut(index, image) and self._frames > 0
        period = sync_period(self.config, pts_seconds)
        sync = period is not None and self._period is not None and period != self._period
        self._period = period
        if self.tracker.update(index, image, cut=cut, sync=sync, period=period) != cut and self.scene_cuts is not None:
            self.scene_cuts.retract(index)
        self._frames += 1
        self._last_pushed = index
        self._pending.append((index, pts_seconds, counted))
        out = []
        while len(self._pending) > self.lookahead:
            out.append(self._release(*self._pending.popleft()))
        return out

    def flush(self) -> list[FrameFaces]:
        out = []
        while self._pending:
            out.append(self._release(*self._pending.popleft()))
        return out

    def close(self) -> None:
        """The worker threads end (the stage takes no more frames)."""
        if self.pool is not None:
            self.pool.shutdown()

    def held_observations(self) -> int:
        """Observations and motion links the stage holds now (bounded by the window, whatever the clip's length)."""
        tracks = self.tracker.tracks + self.tracker.finished
        return sum(len(t.observations) + len(t.motions) for t in tracks)

    # -- releasing a frame ------------------------------------------------------------------------

    def _release(self, index: int, pts: float | None, counted: bool) -> FrameFaces:
        found: list[tuple[TrackedFace, dict[int, Motion]]] = []
        for track in self.tracker.tracks + self.tracker.finished:
            if track.first > index or (track.until is not None and index >= track.until):
                continue
            if not self._confirmed(track):
                continue
            face = self._blended(track, index, self._face_at(track, index, counted))
            if face is not None:
                found.append((face, track.motions))
        # the paste order (and a grain seed's place) by where the faces are, never by id: ids depend on where
        # the run started, and the last face pasted is on top where two overlap; the biggest goes last
        found.sort(key=lambda pair: _paste_key(pair[0]))
        if self.config.max_faces > 0 and len(found) > self.config.max_faces:
            self._extra_skipped += (len(found) - self.config.max_faces) if counted else 0
            found = found[-self.config.max_faces :]
        faces = [face for face, _ in found]
        if counted and self._first_counted is None:
            self._first_counted = index
        reported = index - self._first_counted if counted and self._first_counted is not None else None
        result = FrameFaces(index=index, faces=faces, pts_seconds=pts, reported=reported)
        if reported is not None:
            for face, motions in found:
                self._record(face, reported, index, motions)
            if self.tracks_sink is not None:
                self.tracks_sink.write(replace(result, index=reported))
        self._prune(index)
        return result

    def _shot_end(self, track: Track) -> int:
        starts = self.tracker.shot_starts
        return starts[track.shot + 1] - 1 if track.shot + 1 < len(starts) else self._last_pushed

    def _confirmed(self, track: Track) -> bool:
        """A candidate becomes a face once its evidence agrees: a confident detection with a face's layout,
        seen again by the full detector (unless its shot ends before a second look), scored as a face by the
        per-frame refinement too (on average), and enough observations (fewer where the shot is shorter: a
        still or a two-frame clip)."""
        if track.confirmed:
            return True
        shot_end = self._shot_end(track)
        needed = min(self.config.min_track_length, shot_end - track.first + 1)
        second_look = track.keyframe_hits >= 2 or shot_end - track.first < _CONFIRM_AFTER
        looks = [o.score for o in track.observations]
        steady = bool(looks) and float(np.mean(looks)) >= self.config.confirm_score - _refine_margin(track)
        if (
            track.plausible
            and track.count >= max(needed, 1)
            and track.best_score >= self.config.confirm_score
            and steady
            and second_look
        ):
            track.confirmed = True
        return track.confirmed

    def _blended(self, track: Track, index: int, face: TrackedFace | None) -> TrackedFace | None:
        """A track that took another's face over: from that one's landmarks into its own over ``follow_frames``
        (the two tracks' landmarks differ by a little bias: the blend moves it over those frames, not at once)."""
        before = track.predecessor
        span = follow_frames(self.config)
        if face is None or before is None or index >= track.first + span or not self._confirmed(before):
            return face
        other = self._face_at(before, index, counted=False)
        if other is None:
            return face
        weight = (index - track.first + 1) / (span + 1)
        lm = (1.0 - weight) * other.landmarks5.astype(np.float64) + weight * face.landmarks5.astype(np.float64)
        return TrackedFace(
            track.id, lm.astype(np.float32), face_box(lm).astype(np.float32), face.score, face.interpolated
        )

    def _face_at(self, track: Track, index: int, counted: bool) -> TrackedFace | None:
        """The track's face in frame ``index``, from its observations and motion links; ``counted``: its raw
        figures go into the report's metrics."""
        obs = {o.index: o for o in track.observations}
        motions = track.motions
        here = obs.get(index)
        rested = here is None and index in track.rested  # between a steady face's looks: smoothed as observed
        if here is not None and self.window == 0:
            if counted:
                self._count_raw(track, index, obs, motions)
            return TrackedFace(track.id, here.landmarks.astype(np.float32), here.box.astype(np.float32), here.score)
        reach = self.window if here is not None or rested else self.reach
        offsets, carried, scores = _carried(index, obs, motions, reach)
        if here is None and not rested:
            near = [abs(o) for o in offsets]
            if not near:
                return self._straight_bridge(track, index, obs)
            if min(near) > self.config.max_gap + 1:
                return None
        raw = here.landmarks if here is not None else None
        if len(offsets) == 1:
            fit = carried[0]
        else:
            scale = float(face_scale(raw if raw is not None else carried[0]))
            times = np.asarray(offsets, np.float64)
            fit = local_linear(
                times, np.stack([c.reshape(-1) for c in carried]), 0.0, max(reach, 1), _NOISE_FLOOR * scale, _FIT_DEGREE
            ).reshape(5, 2)
            if self.config.smooth_target == "similarity":
                fit = _similarity_fit(times, carried, fit, max(reach, 1), scale)
        if raw is not None:
            if counted:
                self._count_raw(track, index, obs, motions)
            strength = float(self.config.smooth_strength)  # 0..1, declared in config.py
            lm = raw + strength * (fit - raw)
            score, interpolated = here.score, False
        else:
            lm, score, interpolated = fit, float(min(scores)), not rested
        return TrackedFace(
            track_id=track.id,
            landmarks5=lm.astype(np.float32),
            box=face_box(lm).astype(np.float32),
            score=float(score),
            interpolated=interpolated,
        )

    def _straight_bridge(self, track: Track, index: int, obs: dict) -> TrackedFace | None:
        """A gap with no usable motion (a featureless or blurred face): a straight line between its ends."""
        times = sorted(obs)
        before = [t for t in times if t < index]
        after = [t for t in times if t > index]
        if not before or not after or after[0] - before[-1] - 1 > self.config.max_gap:
            return None
        j, k = obs[before[-1]], obs[after[0]]
        w = (index - j.index) / (k.index - j.index)
        lm = (1 - w) * j.landmarks + w * k.landmarks
        box = face_box(lm).astype(np.float32)
        return TrackedFace(track.id, lm.astype(np.float32), box, min(j.score, k.score), interpolated=True)

    def _count_raw(self, track: Track, index: int, obs: dict[int, Observation], motions: dict[int, Motion]) -> None:
        """Unsmoothed metrics around ``index``: second differences, and disagreement with the measured motion."""
        if index - 1 in obs and index + 1 in obs:
            d2 = obs[index + 1].landmarks - 2 * obs[index].landmarks + obs[index - 1].landmarks
            self._jitter_raw[0] += float(np.sum(d2**2))
            self._jitter_raw[1] += 5
            self._raw_centres.setdefault(track.id, deque(maxlen=4)).append(index)
        link = motions.get(index)
        if index - 1 in obs and link is not None and link.reliable:
            d = obs[index].landmarks - apply(link.affine, obs[index - 1].landmarks)
            self._agreement_raw[0] += float(np.sum(d**2))
            self._agreement_raw[1] += 5

    def _record(self, face: TrackedFace, number: int, index: int, motions: dict[int, Motion]) -> None:
        """A face given out in frame ``index`` (``number`` in the reports' numbering): metrics and summary."""
        history = self._last_emitted.setdefault(face.track_id, [])
        lm = face.landmarks5.astype(np.float64)
        if history and history[-1][0] == index - 1:
            link = motions.get(index)
            if link is not None and link.reliable:
                d = lm - apply(link.affine, history[-1][1])
                self._agreement_smooth[0] += float(np.sum(d**2))
                self._agreement_smooth[1] += 5
        history.append((index, lm))
        del history[:-3]
        centre = history[1][0] if len(history) == 3 else None
        if (
            centre is not None
            and history[2][0] - history[0][0] == 2
            and centre in self._raw_centres.get(face.track_id, ())
        ):
            # only where the raw jitter was counted: both figures describe the same frames (bridged gaps and
            # frames without three detections in a row would otherwise weigh on one side alone)
            d2 = history[2][1] - 2 * history[1][1] + history[0][1]
            self._jitter_smooth[0] += float(np.sum(d2**2))
            self._jitter_smooth[1] += 5
        tally = self._tallies.setdefault(face.track_id, _TrackTally(first=number, last=number))
        tally.last = number
        tally.frames += 1
        tally.score_sum += face.score
        if face.score > tally.best_score:
            tally.best_score = face.score
            tally.sample_frame = number
            tally.sample_box = tuple(float(v) for v in face.box)

    def _prune(self, released: int) -> None:
        """Forget observations and motions no later frame can need, and tracks that ended before them."""
        keep_from = released + 1 - self.reach - 1
        for track in self.tracker.tracks + self.tracker.finished:
            if len(track.observations) > 2:
                drop = 0
                while drop < len(track.observations) - 2 and track.observations[drop].index < keep_from:
                    drop += 1
                del track.observations[:drop]
            for k in [k for k in track.motions if k < keep_from]:
                del track.motions[k]
            track.rested.difference_update([k for k in track.rested if k < keep_from])
        for track in self.tracker.tracks + self.tracker.finished:
            if track.predecessor is not None and released >= track.first + follow_frames(self.config):
                track.predecessor = None  # the blend is over
        kept = []
        for track in self.tracker.finished:
            if track.observations and track.observations[-1].index > released:
                kept.append(track)
            else:
                self._last_emitted.pop(track.id, None)
                if not track.confirmed:
                    self._rejected_tracks += 1
        self.tracker.finished = kept

    # -- summaries --------------------------------------------------------------------------------

    def track_summaries(self) -> list[TrackSummary]:
        """One summary per track given out so far, by id (what preview and batch use)."""
        return [
            TrackSummary(
                id=track_id,
                first_frame=t.first,
                last_frame=t.last,
                frames=t.frames,
                mean_score=t.score_sum / max(t.frames, 1),
                sample_frame=t.sample_frame,
                sample_box=t.sample_box,
            )
            for track_id, t in sorted(self._tallies.items())
        ]

    def rejected_candidates(self) -> int:
        """Detections never restored: a face's layout missing, or evidence that never agreed."""
        pending = sum(1 for t in self.tracker.tracks + self.tracker.finished if not t.confirmed)
        return self.tracker.rejected_candidates + self._rejected_tracks + pending

    def summary(self) -> FacesSummary:
        """Counts, per-track summaries and accuracy metrics for the run's ``--report`` JSON."""
        return FacesSummary(
            detector=self.detector.name,
            detector_device=self.detector.device,
            detector_calls=self.tracker.detector_calls,
            detector_region_calls=self.tracker.detector_region_calls,
            frames=self._frames,
            skipped_faces=self.tracker.skipped_faces + self._extra_skipped,
            rejected_candidates=self.rejected_candidates(),
            keyframe_interval=self.config.keyframe_interval,
            min_face=self.config.min_face,
            smoothing=SmoothingSummary(
                enabled=bool(self.config.smooth and self.window > 0),
                window=self.window,
                strength=self.config.smooth_strength,
            ),
            tracks=tuple(self.track_summaries()),
            jitter_raw_px=_rms(self._jitter_raw),
            jitter_smoothed_px=_rms(self._jitter_smooth),
            motion_agreement_raw_px=_rms(self._agreement_raw),
            motion_agreement_px=_rms(self._agreement_smooth),
            scene_cuts=tuple(self.scene_cuts.cuts) if self.scene_cuts is not None else (),
            scene_cuts_overruled=self.tracker.vetoed_cuts,
        )


def _carried(
    index: int, obs: dict[int, Observation], motions: dict[int, Motion], reach: int
) -> tuple[list[int], list[np.ndarray], list[float]]:
    """Observations within ``reach`` frames of ``index``, carried into frame ``index`` by the measured motion
    (outwards from ``index``, stopping at the first unreliable or missing link)."""
    offsets, carried, scores = [], [], []
    if index in obs:
        offsets.append(0)
        carried.append(obs[index].landmarks)
        scores.append(obs[index].score)
    affine, k = IDENTITY, index
    while k > index - reach:
        link = motions.get(k)  # frame k-1 -> k
        if link is None or not link.reliable:
            break
        affine = compose(affine, link.affine)
        k -= 1
        if k in obs:
            offsets.append(k - index)
            carried.append(apply(affine, obs[k].landmarks))
            scores.append(obs[k].score)
    affine, k = IDENTITY, index
    while k < index + reach:
        link = motions.get(k + 1)  # frame k -> k+1
        if link is None or not link.reliable:
            break
        affine = compose(affine, link.inverse)
        k += 1
        if k in obs:
            offsets.append(k - index)
            carried.append(apply(affine, obs[k].landmarks))
            scores.append(obs[k].score)
    return offsets, carried, scores


def _paste_key(face: TrackedFace) -> tuple[float, float, float]:
    """Smaller faces first (pasted under the bigger ones), then left to right, top to bottom."""
    centre = face.landmarks5.mean(axis=0)
    return float(face_scale(face.landmarks5)), float(centre[0]), float(centre[1])


def _similarity_fit(times: np.ndarray, carried: list[np.ndarray], points: np.ndarray, reach: int, scale: float):
    """Smooth the alignment instead of the points: the robust fit of each carried observation's similarity to
    the template, applied to the point fit's shape (so ``face_to_crop`` of the result is the smoothed alignment,
    and one point that moves alone, an opening mouth, moves the crop less)."""
    template = template_points("gpen", 1)
    params = []
    for c in carried:
        s = umeyama_similarity(c, template)
        params.append([s[0, 0], s[1, 0], s[0, 2], s[1, 2]])
    unit = 1.0 / max(scale, 1.0)  # template units per frame px: the noise floor in the parameters' scale
    a, b, tx, ty = local_linear(times, np.asarray(params), 0.0, reach, _NOISE_FLOOR * unit, _FIT_DEGREE)
    smoothed = np.array([[a, -b, tx], [b, a, ty]])
    current = umeyama_similarity(points, template)
    # points -> template by ``current``, template -> frame by the smoothed alignment's inverse
    return apply(compose(invert(smoothed), current), points)


def _refine_margin(track: Track) -> float:
    """How far below ``confirm_score`` the track's mean refinement score may sit (more for small faces)."""
    box = track.observations[-1].box if track.observations else None
    side = float(max(box[2] - box[0], box[3] - box[1])) if box is not None else _SMALL_FROM
    small = float(np.clip((_SMALL_FROM - side) / (_SMALL_FROM - _SMALL_FULL), 0.0, 1.0))
    return _REFINE_MARGIN + small * (_SMALL_MARGIN - _REFINE_MARGIN)


def _rms(acc: list) -> float | None:
    return round(math.sqrt(acc[0] / acc[1]), 4) if acc[1] else None
