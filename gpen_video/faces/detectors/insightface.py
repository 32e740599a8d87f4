"""SCRFD / RetinaFace detectors from insightface's model zoo (e.g. ``det_10g.onnx`` of ``buffalo_l``).

Run with ONNX Runtime directly (insightface's own wrapper pulls in model-zoo downloads and global
state we do not want). Both model families share one output layout: per feature stride, face scores,
box distances (left, top, right, bottom) and optionally 5 keypoint offsets, all relative to a grid
of anchor centres, in units of the stride. Pre-processing: letterbox into a square input (top-left,
aspect kept), RGB, ``(x - 127.5) / 128``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gpen_video.errors import ModelError
from gpen_video.faces.detectors.base import Detector, nms
from gpen_video.faces.types import Detections
from gpen_video.ort_session import ort_session

#: number of outputs -> (feature strides, anchors per location); only layouts with keypoints are usable
LAYOUTS = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}
_NMS_IOU = 0.4


def anchor_centres(height: int, width: int, stride: int, anchors: int) -> np.ndarray:
    """(height·width·anchors, 2) x, y of the anchor centres of one feature level, in input pixels."""
    centres = np.stack(np.mgrid[:height, :width][::-1], axis=-1).astype(np.float32)
    centres = (centres * stride).reshape(-1, 2)
    if anchors > 1:
        centres = np.repeat(centres, anchors, axis=0)
    return centres


def decode_outputs(
    outputs: list[np.ndarray], input_height: int, input_width: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N, 4), scores (N,), keypoints (N, 5, 2) in input pixels, before NMS, from raw model outputs."""
    if len(outputs) not in LAYOUTS:
        raise ModelError(
            f"a face detector with {len(outputs)} outputs is not an SCRFD/RetinaFace model with 5 keypoints "
            "(expected 9 or 15 outputs)"
        )
    strides, anchors = LAYOUTS[len(outputs)]
    levels = len(strides)
    boxes, scores, points = [], [], []
    for level, stride in enumerate(strides):
        score = np.asarray(outputs[level]).reshape(-1)
        dist = np.asarray(outputs[level + levels]).reshape(-1, 4) * stride
        kps = np.asarray(outputs[level + 2 * levels]).reshape(-1, 10) * stride
        centres = anchor_centres(input_height // stride, input_width // stride, stride, anchors)
        if len(centres) != len(score):
            raise ModelError(f"detector output {level} has {len(score)} scores for {len(centres)} anchors")
        keep = np.nonzero(score >= threshold)[0]
        c = centres[keep]
        boxes.append(np.concatenate([c - dist[keep, :2], c + dist[keep, 2:]], axis=1))
        scores.append(score[keep])
        points.append(c[:, None, :] + kps[keep].reshape(-1, 5, 2))
    return (
        np.concatenate(boxes).astype(np.float32),
        np.concatenate(scores).astype(np.float32),
        np.concatenate(points).astype(np.float32),
    )


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """NCHW float32 blob of ``image`` fitted into size×size (top-left, aspect kept), and the scale used."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    blob = (cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32) - 127.5) / 128.0
    return np.ascontiguousarray(blob.transpose(2, 0, 1)[None]), new_h / height


class InsightFaceDetector(Detector):
    """An SCRFD or RetinaFace ONNX model (insightface model-zoo layout) run with ONNX Runtime."""

    def __init__(
        self,
        path: str | Path,
        kind: str = "scrfd",
        score_threshold: float = 0.5,
        input_size: int = 640,
        threads: int = 0,
    ):
        import onnxruntime as ort

        path = Path(path).expanduser()
        if not path.is_file():
            raise ModelError(f"detector model not found: {path}")
        self._session = ort_session(path, ort.get_available_providers(), threads=threads, what="ONNX face detector")
        outputs = self._session.get_outputs()
        if len(outputs) not in LAYOUTS:
            raise ModelError(
                f"{path}: {len(outputs)} outputs; expected an SCRFD/RetinaFace model with keypoints (9 or 15)"
            )
        self._input = self._session.get_inputs()[0].name
        shape = self._session.get_inputs()[0].shape
        self.input_size = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else input_size
        self.score_threshold = score_threshold
        self.name = f"{kind}:{path.name}"
        self.path = path

    def detect(self, image: np.ndarray, min_size: int | None = None, max_size: int | None = None) -> Detections:
        blob, scale = letterbox(image, self.input_size)
        outputs = self._session.run(None, {self._input: blob})
        boxes, scores, points = decode_outputs(outputs, blob.shape[2], blob.shape[3], self.score_threshold)
        return postprocess(boxes, scores, points, scale, min_size)


def postprocess(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, scale: float, min_size: int | None = None
) -> Detections:
    """NMS, back to image pixels, and the optional minimum box size."""
    if len(scores) == 0:
        return Detections.empty()
    keep = nms(boxes.astype(np.float64), scores.astype(np.float64), _NMS_IOU)
    found = Detections(boxes[keep] / scale, scores[keep], points[keep] / scale)
    if min_size:
        side = np.minimum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])
        found = found.select(side >= min_size)
    return found
