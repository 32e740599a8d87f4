"""Faces stage: detection, persistent tracks, zero-phase landmark smoothing and scene cuts."""

from gpen_video.faces.detectors import Detector, create_detector
from gpen_video.faces.stage import FaceStage
from gpen_video.faces.types import Detections, FrameFaces, TrackedFace, face_scale, frontalness

__all__ = [
    "Detections",
    "Detector",
    "FaceStage",
    "FrameFaces",
    "TrackedFace",
    "create_detector",
    "face_scale",
    "frontalness",
]
