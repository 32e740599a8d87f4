"""Face recognisers (``base.Recognizer``): dlib's ResNet from its wheel, or insightface's ArcFace where the user has it.

``create_recognizer`` picks one by name: ``auto`` (dlib where its wheels are installed, else ArcFace where
``w600k_r50.onnx`` is in insightface's model folder), ``dlib``, ``arcface``, or the path of an ArcFace ``.onnx``.
dlib is imported only when its recogniser is made.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gpen_video.errors import ConfigError, DependencyError, ModelError
from gpen_video.faces.detectors import insightface_model_dir
from gpen_video.faces.recognizers.arcface import ARCFACE_FILE, ArcFaceRecognizer, find_arcface_model
from gpen_video.faces.recognizers.base import Recognizer
from gpen_video.faces.recognizers.dlib_resnet import IDENTITY_EXTRA, DlibRecognizer, dlib_available

log = logging.getLogger(__name__)

RECOGNIZER_NAMES = ("auto", "dlib", "arcface")

__all__ = ["RECOGNIZER_NAMES", "Recognizer", "create_recognizer", "recognizer_available"]


def recognizer_available() -> bool:
    """Whether ``create_recognizer("auto")`` has a model to make (nothing is imported or loaded to tell)."""
    return dlib_available() or find_arcface_model() is not None


def _arcface_folder_hint() -> str:
    return f"put insightface's {ARCFACE_FILE} (buffalo_l) in {insightface_model_dir() / 'buffalo_l'}"


def _arcface(threads: int) -> ArcFaceRecognizer:
    path = find_arcface_model()
    if path is None:
        raise ModelError(f"no ArcFace recogniser: {_arcface_folder_hint()}, or use the dlib one: {IDENTITY_EXTRA}")
    return ArcFaceRecognizer(path, threads=threads)


def _auto(threads: int) -> Recognizer:
    if dlib_available():
        try:
            return DlibRecognizer()
        except DependencyError as exc:  # installed but not importable (a broken wheel): try ArcFace
            log.warning("%s", exc)
    path = find_arcface_model()
    if path is not None:
        return ArcFaceRecognizer(path, threads=threads)
    raise DependencyError(f"telling faces apart needs a face recogniser: {IDENTITY_EXTRA}, or {_arcface_folder_hint()}")


def create_recognizer(name: str = "auto", threads: int = 0) -> Recognizer:
    """The recogniser called ``name``: auto | dlib | arcface | the path of an ArcFace ``.onnx`` file.

    ``threads``: ONNX Runtime's intra-op threads for ArcFace (0: ``ort_session``'s default); dlib uses one.
    """
    key = str(name).strip()
    if key.lower() == "auto":
        return _auto(threads)
    if key.lower() == "dlib":
        return DlibRecognizer()
    if key.lower() == "arcface":
        return _arcface(threads)
    if key.lower().endswith(".onnx"):
        return ArcFaceRecognizer(Path(key), threads=threads)
    choices = ", ".join(RECOGNIZER_NAMES)
    raise ConfigError(f"unknown face recogniser '{name}'; choose one of: {choices}, or the path of an ArcFace .onnx")
