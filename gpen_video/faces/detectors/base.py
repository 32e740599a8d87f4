"""One interface for every face detector, and the non-maximum suppression they share.

The tracker needs two things from a detector: a full detection on key frames, and (optionally) a
cheap per-face refinement of landmarks around a predicted box on the frames in between. MTCNN does
the second with its last stage (ONet) alone; detectors that cannot simply do not offer it and the
tracker falls back to running them on a crop around each tracked face.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from gpen_video.faces.types import Detections

_NMS_MATRIX = 1024  # up to this many boxes, non-maximum suppression works on the matrix of all overlaps


class Detector(ABC):
    """Finds faces with 5 landmarks in a BGR uint8 image."""

    name: str = "detector"
    #: True when ``detect`` on a whole big frame sees small faces as well as a tile would (an image pyramid);
    #: False for detectors that resize their input to a fixed size: the tracker then tiles the frame
    whole_frame_pyramid: bool = False
    #: where its networks run: "cpu" (ONNX Runtime), or the torch device of a GPU run
    device: str = "cpu"

    @abstractmethod
    def detect(self, image: np.ndarray, min_size: int | None = None, max_size: int | None = None) -> Detections:
        """All faces in ``image`` (BGR uint8, any size), coordinates in ``image`` pixels.

        ``min_size`` and ``max_size`` (box side, px) are hints: faces outside them may be left out, which
        lets pyramid detectors skip levels.
        """

    def refine(self, image: np.ndarray, boxes: np.ndarray, angles: np.ndarray | None = None) -> Detections | None:
        """Landmarks of the faces inside the given square boxes (one result per box), or None if unsupported.

        ``angles`` (radians, one per box): the faces' roll; the detector looks at each box turned upright.

        A result row may have score 0 where no face was found in its box.
        """
        return None


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (MTCNN's +1 pixel-area convention)."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    if len(boxes) <= _NMS_MATRIX:
        # the same greedy pass with every pair's overlap computed at once (PNet's hundreds of candidates a
        # level made the one-box-at-a-time loop ~3 ms a frame)
        w = np.maximum(0.0, np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]) + 1)
        h = np.maximum(0.0, np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]) + 1)
        inter = w * h
        denom = np.minimum(area[:, None], area[None]) if method == "min" else area[:, None] + area[None] - inter
        overlaps = inter / denom > threshold
        suppressed = np.zeros(len(boxes), bool)
        kept = []
        for i in order.tolist():
            if not suppressed[i]:
                kept.append(i)
                suppressed |= overlaps[i]
        return np.asarray(kept, np.int64)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, np.int64)
