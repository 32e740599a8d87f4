"""Shared helpers for the faces/align tests: cached detector, ground truth from the photo, back-mapping."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from gpen_video.faces.detectors.base import Detector
from gpen_video.faces.types import Detections


@lru_cache(maxsize=1)
def mtcnn():
    from gpen_video.faces.detectors.mtcnn import MtcnnDetector

    return MtcnnDetector(threads=2)


@lru_cache(maxsize=1)
def photo_landmarks() -> np.ndarray:
    """The six faces' landmarks detected once on the full-resolution photo (ground truth), (6, 5, 2)."""
    from gpen_video.synthetic import faces_image

    found = mtcnn().detect(faces_image())
    assert len(found) == 6, f"expected the six faces of t1.jpg, found {len(found)}"
    order = np.argsort(found.landmarks[:, :, 0].mean(1))
    return found.landmarks[order].astype(np.float64)


def to_frame(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ affine[:, :2].T + affine[:, 2]


def to_photo(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    inverse = np.linalg.inv(np.vstack([affine, [0.0, 0.0, 1.0]]))[:2]
    return np.asarray(points, np.float64) @ inverse[:, :2].T + inverse[:, 2]


def which_photo_face(points_in_photo: np.ndarray, tolerance: float = 25.0) -> int | None:
    """Index of the photo face whose landmark centroid is nearest, or None (e.g. a mirrored border face)."""
    gt = photo_landmarks()
    dist = np.linalg.norm(gt.mean(1) - points_in_photo.mean(0), axis=1)
    k = int(np.argmin(dist))
    return k if dist[k] < tolerance else None


def spread(series: dict[int, list[np.ndarray]]) -> float:
    """RMS over faces and points of each point's distance from its own mean over time (photo px)."""
    per_face = []
    for points in series.values():
        a = np.asarray(points)
        per_face.append(np.mean(np.sum((a - a.mean(0)) ** 2, axis=-1)))
    return float(np.sqrt(np.mean(per_face)))


class ScriptedDetector(Detector):
    """A detector that 'finds' given landmarks per frame: for tracker logic tests without a network.

    ``script[frame]`` is a list of (5, 2) landmark arrays; set ``frame`` before each push. ``refine``
    answers with the scripted face nearest each box (score 0 if none is near).
    """

    name = "scripted"

    def __init__(self, script: dict[int, list[np.ndarray]]):
        self.script = script
        self.frame = 0
        self.detect_calls = 0

    def _faces(self) -> list[np.ndarray]:
        return [np.asarray(f, np.float32) for f in self.script.get(self.frame, [])]

    def detect(self, image: np.ndarray, min_size: int | None = None, max_size: int | None = None) -> Detections:
        self.detect_calls += 1
        faces = self._faces()
        if not faces:
            return Detections.empty()
        lm = np.stack(faces)
        from gpen_video.faces.types import face_box

        boxes = np.stack([face_box(f) for f in lm]).astype(np.float32)
        return Detections(boxes, np.full(len(lm), 0.99, np.float32), lm)

    def refine(self, image: np.ndarray, boxes: np.ndarray, angles: np.ndarray | None = None) -> Detections:
        faces = self._faces()
        out = Detections(
            np.asarray(boxes, np.float32).copy(),
            np.zeros(len(boxes), np.float32),
            np.zeros((len(boxes), 5, 2), np.float32),
        )
        for k, box in enumerate(boxes):
            if not faces:
                continue
            centre = 0.5 * (box[:2] + box[2:])
            dist = [np.linalg.norm(f.mean(0) - centre) for f in faces]
            nearest = int(np.argmin(dist))
            if dist[nearest] < 0.5 * (box[2] - box[0]):
                out.landmarks[k] = faces[nearest]
                out.scores[k] = 0.99
        return out
