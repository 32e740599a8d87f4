"""The faces stage: frames in, final per-frame faces out, a fixed number of frames later.

``push`` runs scene-cut detection and the tracker on each frame as it arrives; a frame is released
once ``lookahead`` newer frames have been seen, because only then are the future observations its
zero-phase smoothing, gap filling and short-track test need known. Memory stays flat: observations
older than the smoothing window are dropped as frames are released (the report keeps one compact
row per face and frame).
"""

from __future__ import annotations

import logging
import math
from collections import deque

import numpy as np

from gpen_video.config import FacesConfig
from gpen_video.faces.detectors import Detector, create_detector
from gpen_video.faces.scenecut import SceneCutDetector
from gpen_video.faces.smoothing import local_linear
from gpen_video.faces.tracker import Observation, Track, Tracker
from gpen_video.faces.types import FrameFaces, TrackedFace, face_scale

log = logging.getLogger(__name__)

_NOISE_FLOOR = 0.02  # of the face scale: residuals below this are never treated as outliers


class FaceStage:
    """Streaming: push frames in order; get back frames whose faces are final (delayed by the look-ahead window)."""

    def __init__(self, config: FacesConfig, detector: Detector | None = None):
        self.config = config
        self.detector = detector or create_detector(
            config.detector, score_threshold=config.score_threshold, threads=config.detector_threads
        )
        self.tracker = Tracker(self.detector, config)
        self.scene_cuts = (
            SceneCutDetector(config.scene_threshold, config.min_scene_len) if config.scene_threshold > 0 else None
        )
        self._pending: deque[tuple[int, float | None]] = deque()
        self._frames = 0
        self._extra_skipped = 0
        self._rows: dict[int, list[dict]] = {}  # report rows per track id
        self._last_emitted: dict[int, list[tuple[int, np.ndarray]]] = {}
        self._jitter_raw = [0.0, 0]
        self._jitter_smooth = [0.0, 0]

    @property
    def window(self) -> int:
        return max(0, int(self.config.smooth_window)) if self.config.smooth else 0

    @property
    def lookahead(self) -> int:
        """Frames ``push`` may hold back: smoothing window, gap length and minimum track length."""
        return max(self.window, self.config.max_gap + 1, self.config.min_track_length, 1)

    def push(self, index: int, image: np.ndarray, pts_seconds: float | None = None) -> list[FrameFaces]:
        if image.dtype != np.uint8:
            image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
        cut = False
        if self.scene_cuts is not None:
            cut = self.scene_cuts.is_cut(index, image) and self._frames > 0
        self.tracker.update(index, image, cut=cut)
        self._frames += 1
        self._pending.append((index, pts_seconds))
        out = []
        while len(self._pending) > self.lookahead:
            out.append(self._release(*self._pending.popleft()))
        return out

    def flush(self) -> list[FrameFaces]:
        out = []
        while self._pending:
            out.append(self._release(*self._pending.popleft()))
        return out

    # -- releasing a frame ------------------------------------------------------------------------

    def _release(self, index: int, pts: float | None) -> FrameFaces:
        faces = []
        for track in self.tracker.tracks + self.tracker.finished:
            face = self._face_at(track, index)
            if face is not None:
                faces.append(face)
        if self.config.max_faces > 0 and len(faces) > self.config.max_faces:
            faces.sort(key=lambda f: -float(face_scale(f.landmarks5)))
            self._extra_skipped += len(faces) - self.config.max_faces
            faces = faces[: self.config.max_faces]
        faces.sort(key=lambda f: f.track_id)
        for face in faces:
            self._record(face, index, pts)
        self._prune(index)
        return FrameFaces(index=index, faces=faces, pts_seconds=pts)

    def _face_at(self, track: Track, index: int) -> TrackedFace | None:
        if track.count < self.config.min_track_length or not track.observations:
            return None
        obs = track.observations
        times = np.array([o.index for o in obs])
        here = np.nonzero(times == index)[0]
        if here.size:
            raw_lm, raw_box, score, interpolated = obs[here[0]].landmarks, obs[here[0]].box, obs[here[0]].score, False
        else:
            before, after = times[times < index], times[times > index]
            if not before.size or not after.size or after[0] - before[-1] - 1 > self.config.max_gap:
                return None
            j, k = np.nonzero(times == before[-1])[0][0], np.nonzero(times == after[0])[0][0]
            w = (index - times[j]) / (times[k] - times[j])
            raw_lm = (1 - w) * obs[j].landmarks + w * obs[k].landmarks
            raw_box = (1 - w) * obs[j].box + w * obs[k].box
            score, interpolated = min(obs[j].score, obs[k].score), True
        if not interpolated:
            self._count_raw_jitter(index, obs)
        lm, box = raw_lm, raw_box
        window = self.window
        strength = float(np.clip(self.config.smooth_strength, 0.0, 1.0))
        if window > 0 and strength > 0:
            near = np.abs(times - index) <= window
            floor = _NOISE_FLOOR * float(face_scale(raw_lm))
            fit_lm = local_linear(
                times[near],
                np.stack([o.landmarks.reshape(-1) for o, n in zip(obs, near, strict=True) if n]),
                index,
                window,
                floor,
            )
            fit_box = local_linear(
                times[near], np.stack([o.box for o, n in zip(obs, near, strict=True) if n]), index, window, floor
            )
            lm = raw_lm + strength * (fit_lm.reshape(5, 2) - raw_lm)
            box = raw_box + strength * (fit_box - raw_box)
        return TrackedFace(
            track_id=track.id,
            landmarks5=lm.astype(np.float32),
            box=box.astype(np.float32),
            score=float(score),
            interpolated=interpolated,
        )

    def _count_raw_jitter(self, index: int, obs: list[Observation]) -> None:
        """Second difference of the unsmoothed observations around ``index`` (the report's "before")."""
        by_index = {o.index: o for o in obs}
        if index - 1 in by_index and index + 1 in by_index:
            d2 = by_index[index + 1].landmarks - 2 * by_index[index].landmarks + by_index[index - 1].landmarks
            self._jitter_raw[0] += float(np.sum(d2**2))
            self._jitter_raw[1] += 5

    def _record(self, face: TrackedFace, index: int, pts: float | None) -> None:
        history = self._last_emitted.setdefault(face.track_id, [])
        history.append((index, face.landmarks5.astype(np.float64)))
        del history[:-3]
        if len(history) == 3 and history[2][0] - history[0][0] == 2:
            d2 = history[2][1] - 2 * history[1][1] + history[0][1]
            self._jitter_smooth[0] += float(np.sum(d2**2))
            self._jitter_smooth[1] += 5
        self._rows.setdefault(face.track_id, []).append(
            {
                "index": int(index),
                "pts": pts,
                "landmarks": np.round(face.landmarks5.astype(np.float64), 3).tolist(),
                "box": np.round(face.box.astype(np.float64), 2).tolist(),
                "score": round(face.score, 4),
                "interpolated": face.interpolated,
            }
        )

    def _prune(self, released: int) -> None:
        """Forget observations no later frame can need, and tracks that ended before them."""
        keep_from = released + 1 - self.window - self.config.max_gap - 1
        for track in self.tracker.tracks + self.tracker.finished:
            if len(track.observations) > 2:
                drop = 0
                while drop < len(track.observations) - 2 and track.observations[drop].index < keep_from:
                    drop += 1
                del track.observations[:drop]
        self.tracker.finished = [
            t for t in self.tracker.finished if t.observations and t.observations[-1].index > released
        ]

    # -- report -----------------------------------------------------------------------------------

    def report(self) -> dict:
        """Summary and per-track landmarks for the run's ``--report`` JSON."""
        return {
            "detector": getattr(self.detector, "name", type(self.detector).__name__),
            "detector_calls": self.tracker.detector_calls,
            "frames": self._frames,
            "skipped_faces": self.tracker.skipped_faces + self._extra_skipped,
            "keyframe_interval": self.config.keyframe_interval,
            "smoothing": {
                "enabled": bool(self.config.smooth and self.window > 0),
                "window": self.window,
                "strength": self.config.smooth_strength,
            },
            "tracks": [
                {"id": track_id, "first_frame": rows[0]["index"], "last_frame": rows[-1]["index"], "frames": rows}
                for track_id, rows in sorted(self._rows.items())
            ],
            "jitter_raw_px": _rms(self._jitter_raw),
            "jitter_smoothed_px": _rms(self._jitter_smooth),
            "scene_cuts": list(self.scene_cuts.cuts) if self.scene_cuts is not None else [],
        }


def _rms(acc: list) -> float | None:
    return round(math.sqrt(acc[0] / acc[1]), 4) if acc[1] else None
