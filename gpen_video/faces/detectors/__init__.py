"""The face detectors (``base.Detector``: MTCNN, SCRFD / RetinaFace), and the factory that picks one by name."""

from __future__ import annotations

import logging
from pathlib import Path

from gpen_video.config import DETECTOR_NAMES
from gpen_video.errors import ConfigError, ModelError
from gpen_video.faces.detectors.base import Detector

log = logging.getLogger(__name__)


def insightface_model_dir() -> Path:
    """Where insightface keeps its model zoo (``~/.insightface/models``, or ``$INSIGHTFACE_HOME/models``)."""
    import os

    root = os.environ.get("INSIGHTFACE_HOME") or os.path.join(os.path.expanduser("~"), ".insightface")
    return Path(root) / "models"


def find_insightface_model(kind: str) -> Path | None:
    """The first detector ONNX file of ``kind`` (scrfd | retinaface) in insightface's model folder."""
    root = insightface_model_dir()
    if not root.is_dir():
        return None
    patterns = {
        "scrfd": ("det_10g.onnx", "det_2.5g.onnx", "det_500m.onnx", "scrfd*.onnx"),
        "retinaface": ("*retinaface*.onnx",),
    }
    for pattern in patterns[kind]:
        found = sorted(root.rglob(pattern))
        if found:
            return found[0]
    return None


def create_detector(
    name: str = "auto", score_threshold: float = 0.8, min_size: int = 20, threads: int = 0, device: str | None = None
) -> Detector:
    """Build a detector by name (auto | mtcnn | scrfd | retinaface) or from an ``.onnx`` path.

    ``auto`` prefers insightface's SCRFD (more accurate landmarks, better on small and turned faces)
    when its model file is present, then RetinaFace, and otherwise the embedded MTCNN that always works
    offline; it logs which one it picked. ``device``: the torch device MTCNN's networks run on (None: ONNX Runtime
    on the CPU); the insightface detectors run on ONNX Runtime's CPU provider.
    """
    key = name.strip()
    lowered = key.lower()
    if lowered.endswith(".onnx") or "/" in key or "\\" in key:
        from gpen_video.faces.detectors.insightface import InsightFaceDetector

        path = Path(key).expanduser()
        if not path.is_file():
            raise ModelError(f"detector model not found: {path}")
        return InsightFaceDetector(path, score_threshold=score_threshold, threads=threads)
    if lowered not in DETECTOR_NAMES:
        raise ConfigError(f"unknown face detector '{name}'; choose one of: {', '.join(DETECTOR_NAMES)} or a .onnx path")
    if lowered in ("scrfd", "retinaface"):
        from gpen_video.faces.detectors.insightface import InsightFaceDetector

        path = find_insightface_model(lowered)
        if path is None:
            raise ModelError(
                f"no {lowered} model in {insightface_model_dir()}; put det_10g.onnx (buffalo_l) there, "
                "give the .onnx path as the detector, or use --detector mtcnn"
            )
        return InsightFaceDetector(path, kind=lowered, score_threshold=score_threshold, threads=threads)
    if lowered == "auto":
        for kind in ("scrfd", "retinaface"):
            path = find_insightface_model(kind)
            if path is not None:
                from gpen_video.faces.detectors.insightface import InsightFaceDetector

                log.info("face detector: %s (%s)", kind, path)
                return InsightFaceDetector(path, kind=kind, score_threshold=score_threshold, threads=threads)
        log.info("face detector: mtcnn (embedded; no scrfd/retinaface model in %s)", insightface_model_dir())
    from gpen_video.faces.detectors.mtcnn import MtcnnDetector

    return MtcnnDetector(min_size=min_size, score_threshold=score_threshold, threads=threads, device=device)
