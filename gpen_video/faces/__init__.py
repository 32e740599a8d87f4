"""Faces stage: detection, confirmed persistent tracks, motion-compensated zero-phase smoothing, scene cuts."""

from gpen_video.faces.detectors import create_detector
from gpen_video.faces.detectors.base import Detector
from gpen_video.faces.stage import FaceStage
from gpen_video.faces.tracks_file import TracksFile
from gpen_video.faces.types import Detections, FrameFaces, TrackedFace, TrackSummary, face_scale, frontalness

__all__ = [
    "Detections",
    "Detector",
    "FaceStage",
    "FrameFaces",
    "TrackSummary",
    "TrackedFace",
    "TracksFile",
    "create_detector",
    "face_scale",
    "frontalness",
]
