"""insightface's ArcFace recogniser (buffalo_l's ``w600k_r50.onnx``) where the user has it, through ONNX Runtime.

Each face is aligned as insightface aligns it (``face_align.norm_crop``): the similarity that puts the five
landmarks on ``arcface_dst`` in the network's 112×112 input, bilinear, black outside the image; the crop goes in
as RGB, ``(x − 127.5) / 127.5``, NCHW, all faces in one batch where the graph's batch axis is free. An older
MXNet export that normalises its input itself (a ``Sub`` and a ``Mul`` among its first nodes, insightface's own
test) is fed raw pixels instead, where the ``onnx`` package is there to read the graph.

Embeddings are L2-normalised; the distance is cosine, ``1 − cos``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from gpen_video.errors import ModelError
from gpen_video.faces.detectors import insightface_model_dir
from gpen_video.faces.geometry import ARCFACE_112, umeyama_similarity
from gpen_video.faces.recognizers.base import Recognizer
from gpen_video.ort_session import ort_session

log = logging.getLogger(__name__)

ARCFACE_FILE = "w600k_r50.onnx"  # buffalo_l's recogniser
#: insightface's own verdict for this model (web-demos/src_recognition/main.py, buffalo_l's w600k_r50):
#: cosine similarity ≥ 0.28 "They ARE the same person" (0.2–0.28 "likely"); as a distance, 1 − 0.28
ARCFACE_THRESHOLD = 0.72


def find_arcface_model() -> Path | None:
    """``w600k_r50.onnx`` in insightface's model folder (any pack under it, ``buffalo_l`` first), or None."""
    root = insightface_model_dir()
    if not root.is_dir():
        return None
    found = sorted(root.rglob(ARCFACE_FILE), key=lambda p: (p.parent.name != "buffalo_l", str(p)))
    return found[0] if found else None


def _normalisation(path: Path) -> tuple[float, float]:
    """insightface's rule: mean 0, std 1 for a graph whose first nodes subtract and multiply, else 127.5, 127.5."""
    try:
        import onnx
    except ImportError:
        return 127.5, 127.5
    try:
        names = [node.name for node in onnx.load(str(path), load_external_data=False).graph.node[:8]]
    except Exception:  # a file onnx cannot parse: ONNX Runtime already loaded it, keep the usual input
        return 127.5, 127.5
    subtracts = any(n.startswith(("Sub", "_minus")) for n in names)
    multiplies = any(n.startswith(("Mul", "_mul")) for n in names)
    return (0.0, 1.0) if subtracts and multiplies else (127.5, 127.5)


class ArcFaceRecognizer(Recognizer):
    """An ArcFace ONNX network (input N×3×S×S, S a multiple of 112; output N×D): cosine distance."""

    name = "arcface"
    threshold = ARCFACE_THRESHOLD

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        self.path = Path(path).expanduser()
        what = "ArcFace face recogniser"
        self._session = ort_session(self.path, threads=threads, what=what)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        size = shape[2] if len(shape) == 4 and shape[2] == shape[3] else None
        if shape[1:2] != [3] or not isinstance(size, int) or size % 112 or len(outputs) != 1:
            raise ModelError(
                f"{self.path} is not an ArcFace recogniser (one N×3×112×112 input and one output expected, "
                f"found inputs {[list(i.shape) for i in inputs]}); use insightface's {ARCFACE_FILE}"
            )
        self._input, self._output, self._size = inputs[0].name, outputs[0].name, size
        self._one_at_a_time = shape[0] == 1
        self._mean, self._std = _normalisation(self.path)
        log.debug("ArcFace recogniser %s: %d px input, mean %s std %s", self.path, size, self._mean, self._std)

    def crops(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) BGR uint8: each face aligned onto ``arcface_dst`` as insightface's ``norm_crop`` does."""
        template = ARCFACE_112 * (self._size / 112.0)
        points = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
        out = np.zeros((len(points), self._size, self._size, 3), np.uint8)
        for k, face in enumerate(points):
            affine = umeyama_similarity(face, template)
            out[k] = cv2.warpAffine(image, affine, (self._size, self._size), flags=cv2.INTER_LINEAR, borderValue=0.0)
        return out

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        crops = self.crops(image, landmarks)
        if len(crops) == 0:
            dim = self._session.get_outputs()[0].shape[-1]
            return np.zeros((0, dim if isinstance(dim, int) else 512), np.float32)
        blob = (crops[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) - self._mean) / self._std
        batches = [blob[k : k + 1] for k in range(len(blob))] if self._one_at_a_time else [blob]
        raw = np.concatenate([self._session.run([self._output], {self._input: b})[0] for b in batches])
        raw = raw.reshape(len(blob), -1).astype(np.float32)
        return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float32)
        b = np.asarray(b, np.float32)
        a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
        return (1.0 - a.reshape(len(a), -1) @ b.reshape(len(b), -1).T).astype(np.float32)
