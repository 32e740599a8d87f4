"""Where a track's refinement box sits on its face: the canonical box around 5 landmarks, its framing taken
from the detector, and the regions around a box that the detector looks at again.

Every observation of a tracked face is made through a box placed by the same rule, on key frames and in
between, so the landmarks carry no step every N frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpen_video.faces.types import Detections, face_box, face_scale

#: canonical refinement box around 5 landmarks, in units of the eye-to-mouth distance (measured on
#: MTCNN's own stage-2 boxes for real faces: side 2.7, centre 0.24 above the landmarks' centroid)
BOX_SIDE = 2.7
BOX_LIFT = 0.24
_SCALE_GAIN = 0.3  # how far each key-frame detection moves a track's box size toward its own
#: landmark box side (px) below which a face's refinement box follows its measured motion, not its own answers:
#: ONet's answer for a small face follows the box it is given (and leans up and to upright), so boxes placed from
#: those answers drift and turn away (21-25 px faces of a 4K crowd: 8-10 px off and 20-50 degrees turned within
#: 20-35 frames, then lost)
_FOLLOW_MOTION_BELOW = 48.0


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
        roll = roll_angle(lm)
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


def framing_of(detections: Detections, d_idx: int) -> Framing:
    """The framing of detection ``d_idx``: around its landmark stage's input box, where the detector has one."""
    anchor = None if detections.anchor_boxes is None else detections.anchor_boxes[d_idx]
    return Framing.from_detection(detections.landmarks[d_idx], anchor)


def follows_motion(landmarks: np.ndarray) -> bool:
    """Whether a face is small enough for its refinement box to follow its motion (see ``_FOLLOW_MOTION_BELOW``)."""
    box = face_box(landmarks)
    return float(max(box[2] - box[0], box[3] - box[1])) < _FOLLOW_MOTION_BELOW


def roll_angle(landmarks: np.ndarray) -> float:
    """The eye line's angle (radians, image axes)."""
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


def region_around(box: np.ndarray, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Whole-pixel region (x0, y0, x1, y1) of ``box`` grown by ``margin`` px each side, inside a width×height frame."""
    x0, y0 = int(max(box[0] - margin, 0)), int(max(box[1] - margin, 0))
    x1, y1 = int(min(box[2] + margin, width)), int(min(box[3] + margin, height))
    return x0, y0, x1, y1
