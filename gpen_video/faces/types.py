"""Data passed between the detector, tracker, smoother and the rest of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: order of the five landmarks everywhere in the project (image left/right, as seen on screen)
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass
class Detections:
    """What a detector found in one image: ``N`` faces, frame pixel coordinates, float32."""

    boxes: np.ndarray  # (N, 4) x0, y0, x1, y1
    scores: np.ndarray  # (N,)
    landmarks: np.ndarray  # (N, 5, 2)
    #: (N, 4) square boxes the landmark stage looked at (MTCNN's ONet input), where the detector has one;
    #: the tracker reuses their framing so refined landmarks match the detector's
    anchor_boxes: np.ndarray | None = None
    #: (N,) where the detector refines by several looks (MTCNN's shifted and mirrored crops): how much the
    #: looks disagree, RMS landmark distance from their mean in face scales (a face's answer is consistent)
    spread: np.ndarray | None = None

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, keep: np.ndarray) -> Detections:
        anchors = None if self.anchor_boxes is None else self.anchor_boxes[keep]
        spread = None if self.spread is None else self.spread[keep]
        return Detections(self.boxes[keep], self.scores[keep], self.landmarks[keep], anchors, spread)

    def scaled(self, factor: float) -> Detections:
        """Coordinates multiplied by ``factor`` (detections on a resized copy back to the frame)."""
        anchors = None if self.anchor_boxes is None else (self.anchor_boxes * factor).astype(np.float32)
        return Detections(
            (self.boxes * factor).astype(np.float32),
            self.scores,
            (self.landmarks * factor).astype(np.float32),
            anchors,
        )


@dataclass
class TrackedFace:
    """One face in one frame, after tracking and smoothing (what align and the report consume)."""

    track_id: int
    landmarks5: np.ndarray  # (5, 2) float32 frame pixels: left eye, right eye, nose, left mouth, right mouth
    box: np.ndarray  # (4,) float32 x0, y0, x1, y1
    score: float
    interpolated: bool = False


@dataclass
class FrameFaces:
    """The final faces of one frame."""

    index: int
    faces: list[TrackedFace] = field(default_factory=list)
    pts_seconds: float | None = None
    reported: int | None = None  # the frame's number in the reports and ``--tracks`` (None: a warm-up frame)


@dataclass(frozen=True)
class TrackSummary:
    """What a run's report, preview and batch need to know about one face track (no per-frame data)."""

    id: int
    first_frame: int
    last_frame: int
    frames: int  # frames the face was given out in
    mean_score: float
    sample_frame: int  # the frame the face was best seen in (highest score), e.g. for a contact sheet
    sample_box: tuple[float, float, float, float]  # its box there, upright frame pixels

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "frames": self.frames,
            "mean_score": round(self.mean_score, 4),
            "sample_frame": self.sample_frame,
            "sample_box": [round(v, 2) for v in self.sample_box],
        }


@dataclass(frozen=True)
class SmoothingSummary:
    """How the faces stage smoothed the landmarks."""

    enabled: bool
    window: int  # frames either side
    strength: float  # 0..1: how far each raw observation moves to the fit
    motion_compensated: bool = True  # always: the window's observations are carried by the measured motion

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "window": self.window,
            "strength": self.strength,
            "motion_compensated": self.motion_compensated,
        }


@dataclass(frozen=True)
class FacesSummary:
    """What the faces stage did over a run: counts, the tracks given out, and accuracy metrics.

    ``to_dict`` is the run report's ``faces`` section as the stage writes it (the run adds its own keys).
    """

    detector: str
    detector_calls: int  # full detections (key frames)
    detector_region_calls: int  # second looks at new candidates
    frames: int
    skipped_faces: int
    rejected_candidates: int
    keyframe_interval: int
    min_face: int
    smoothing: SmoothingSummary
    tracks: tuple[TrackSummary, ...]
    jitter_raw_px: float | None  # RMS second difference of the raw landmarks (frame px); None without any
    jitter_smoothed_px: float | None  # the same of the landmarks given out, on the same frames
    #: RMS distance (frame px) between a frame's landmarks and the previous frame's carried by the measured
    #: motion: an accuracy estimate without ground truth (raw: the detector's own)
    motion_agreement_raw_px: float | None
    motion_agreement_px: float | None
    scene_cuts: tuple[int, ...]
    scene_cuts_overruled: int  # content cuts the faces' motion followed through
    detector_device: str = "cpu"  # where the detector's networks ran: cpu, or the GPU run's torch device

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "detector_device": self.detector_device,
            "detector_calls": self.detector_calls,
            "detector_region_calls": self.detector_region_calls,
            "frames": self.frames,
            "skipped_faces": self.skipped_faces,
            "rejected_candidates": self.rejected_candidates,
            "keyframe_interval": self.keyframe_interval,
            "min_face": self.min_face,
            "smoothing": self.smoothing.to_dict(),
            "tracks": [s.to_dict() for s in self.tracks],
            "jitter_raw_px": self.jitter_raw_px,
            "jitter_smoothed_px": self.jitter_smoothed_px,
            "motion_agreement_raw_px": self.motion_agreement_raw_px,
            "motion_agreement_px": self.motion_agreement_px,
            "scene_cuts": list(self.scene_cuts),
            "scene_cuts_overruled": self.scene_cuts_overruled,
        }


def face_scale(landmarks: np.ndarray) -> np.ndarray:
    """Eye-centre to mouth-centre distance (px): a size measure that ignores box conventions.

    Works on (5, 2) or (N, 5, 2) arrays and returns a scalar array or (N,).
    """
    lm = np.asarray(landmarks, np.float64)
    eyes = 0.5 * (lm[..., 0, :] + lm[..., 1, :])
    mouth = 0.5 * (lm[..., 3, :] + lm[..., 4, :])
    return np.linalg.norm(mouth - eyes, axis=-1)


def frontalness(landmarks: np.ndarray) -> np.ndarray:
    """1 for a frontal face, towards 0 in profile: ratio of the nose's distances to the two eyes.

    In profile the nose comes close to one eye (on screen) and far from the other, and can even
    cross the eye line; the ratio ``min/max`` of the two distances captures both.
    """
    lm = np.asarray(landmarks, np.float64)
    d_left = np.linalg.norm(lm[..., 2, :] - lm[..., 0, :], axis=-1)
    d_right = np.linalg.norm(lm[..., 2, :] - lm[..., 1, :], axis=-1)
    ratio = np.minimum(d_left, d_right) / np.maximum(np.maximum(d_left, d_right), 1e-6)
    # nose outside the eyes' span along the eye line: definitely profile
    eye_vec = lm[..., 1, :] - lm[..., 0, :]
    t = np.sum((lm[..., 2, :] - lm[..., 0, :]) * eye_vec, axis=-1) / np.maximum(np.sum(eye_vec**2, axis=-1), 1e-6)
    return np.where((t < 0) | (t > 1), 0.0, ratio)


def face_box(landmarks: np.ndarray) -> np.ndarray:
    """An axis-aligned face box (x0, y0, x1, y1) from 5 landmarks, proportioned like MTCNN's boxes.

    Boxes built this way move only when the landmarks do, so they carry no extra detector jitter.
    """
    lm = np.asarray(landmarks, np.float64)
    scale = max(float(face_scale(lm)), 1.0)
    eyes = 0.5 * (lm[0] + lm[1])
    mouth = 0.5 * (lm[3] + lm[4])
    down = (mouth - eyes) / max(float(np.linalg.norm(mouth - eyes)), 1e-6)
    centre = lm.mean(axis=0) - 0.15 * scale * down
    half = np.array([1.1 * scale, 1.4 * scale])
    return np.concatenate([centre - half, centre + half])


def face_layout(landmarks: np.ndarray) -> np.ndarray:
    """The five points in the face's own axes: origin between the eyes, unit the eye distance, x along
    the eye line (left eye to right eye on screen), y down the face. (5, 2) in, (5, 2) out."""
    lm = np.asarray(landmarks, np.float64)
    eyes = 0.5 * (lm[0] + lm[1])
    across = lm[1] - lm[0]
    distance = max(float(np.linalg.norm(across)), 1e-6)
    right = across / distance
    down = np.array([-right[1], right[0]])
    rel = lm - eyes
    return np.stack([rel @ right, rel @ down], axis=1) / distance


def plausible_face(landmarks: np.ndarray) -> bool:
    """Whether five points are laid out as a face's: eye line above the nose, nose above the mouth, mouth
    corners on their own sides, proportions of a real face (frontal to half-profile, any roll).

    Hands, shirts and textures that a detector scores as faces mostly fail this: their "landmarks" are
    collapsed, inverted or stretched.
    """
    p = face_layout(landmarks)
    nose, left_mouth, right_mouth = p[2], p[3], p[4]
    mouth_y = 0.5 * (left_mouth[1] + right_mouth[1])
    mouth_width = right_mouth[0] - left_mouth[0]
    return bool(
        0.2 < nose[1] < 1.3
        and abs(nose[0]) < 0.75
        and mouth_y > nose[1] + 0.03
        and 0.6 < mouth_y < 2.0
        and 0.3 < mouth_width < 1.5
        and abs(left_mouth[1] - right_mouth[1]) < 0.5
    )
