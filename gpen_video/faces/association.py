"""Which detection is which track's face: IoU plus landmark distance, paired by the Hungarian method."""

from __future__ import annotations

import numpy as np

from gpen_video.faces.types import Detections, face_scale

_MATCH_GATE = 1.0  # cost above which a detection and a track are not the same face


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (N, 4) and (M, 4) boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def association_cost(track_landmarks: np.ndarray, track_boxes: np.ndarray, detections: Detections) -> np.ndarray:
    """(tracks × detections) cost: (1 − IoU) + mean landmark distance in face scales; inf where gated out."""
    if len(track_landmarks) == 0 or len(detections) == 0:
        return np.zeros((len(track_landmarks), len(detections)))
    iou = box_iou(track_boxes, detections.boxes)
    scale = np.maximum(face_scale(track_landmarks), 4.0)
    dist = np.linalg.norm(track_landmarks[:, None] - detections.landmarks[None].astype(np.float64), axis=-1).mean(-1)
    cost = (1.0 - iou) + dist / scale[:, None]
    return np.where((iou > 0.1) & (cost < _MATCH_GATE + 1.0) & (dist < scale[:, None]), cost, np.inf)


def hungarian(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one pairs, leaving out pairs whose cost is infinite."""
    if cost.size == 0:
        return []
    finite = np.isfinite(cost)
    if not finite.any():
        return []
    big = np.where(finite, cost, cost[finite].max() * 10 + 1e6)
    from scipy.optimize import linear_sum_assignment  # 0.6 s of imports, paid when the first faces are paired

    rows, cols = linear_sum_assignment(big)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if finite[r, c]]
