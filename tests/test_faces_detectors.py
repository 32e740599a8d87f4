"""Detectors: MTCNN on real faces, the factory, and SCRFD/RetinaFace decoding without the real model."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from faces_helpers import mtcnn, photo_landmarks

from gpen_video.errors import ConfigError, ModelError
from gpen_video.faces import create_detector
from gpen_video.faces.detectors.insightface import InsightFaceDetector, anchor_centres, decode_outputs, letterbox
from gpen_video.faces.detectors.mtcnn import MtcnnDetector
from gpen_video.faces.types import face_scale, frontalness
from gpen_video.synthetic import faces_image


def test_mtcnn_finds_the_six_faces_with_sub_pixel_landmarks():
    lm = photo_landmarks()
    assert lm.shape == (6, 5, 2)
    assert np.any(lm != np.round(lm))  # float landmarks, not the wheel's rounded ones
    eyes_y = lm[:, :2, 1].mean(1)
    mouth_y = lm[:, 3:, 1].mean(1)
    assert np.all(mouth_y > eyes_y)  # upright faces: mouth below eyes
    assert np.all(face_scale(lm) > 30) and np.all(frontalness(lm) > 0.3)


def test_mtcnn_refine_reproduces_detected_landmarks():
    image = faces_image()
    found = mtcnn().detect(image)
    refined = mtcnn().refine(image, found.anchor_boxes)
    assert np.all(refined.scores > 0.9)
    err = np.linalg.norm(refined.landmarks - found.landmarks, axis=-1).mean(1) / face_scale(found.landmarks)
    assert np.all(err < 0.1)
    empty = mtcnn().refine(image, np.zeros((0, 4)))
    assert len(empty) == 0


def test_mtcnn_sessions_keep_no_arena_between_shapes():
    """Every MTCNN call has another input shape: an arena or memory pattern would keep the largest ever seen
    (the RSS of a 180-frame run grew 70 MB at one key frame), so the sessions run without them."""
    detector = mtcnn()
    for network in (detector._pnet, detector._rnet, detector._onet):
        options = network._session.get_session_options()
        assert not options.enable_cpu_mem_arena and not options.enable_mem_pattern


def test_pnet_tiles_give_the_whole_levels_maps_exactly():
    """PNet runs on bounded tiles (each run's tensors under glibc's 4 MiB mmap threshold); every output cell must
    be the one the whole level gives, at sizes around the tile step and the edge rules."""
    from gpen_video.faces.detectors.mtcnn import _PNET_STEP, _pnet_tiled

    pnet = mtcnn()._pnet
    rng = np.random.default_rng(3)
    sizes = [(12, 12), (_PNET_STEP + 9, 40), (_PNET_STEP + 11, _PNET_STEP + 40), (2 * _PNET_STEP + 13, 301), (700, 533)]
    for width, height in sizes:
        level = rng.uniform(-1, 1, (width, height, 3)).astype(np.float32)
        reg, prob = pnet.run(level[None])
        tiled_reg, tiled_prob = _pnet_tiled(pnet, level)
        assert tiled_prob.shape == prob[0].shape and tiled_reg.shape == reg[0].shape, (width, height)
        assert np.array_equal(tiled_prob, prob[0]) and np.array_equal(tiled_reg, reg[0]), (width, height)


class _ShapeLog:
    """A network that records each run's input shape."""

    def __init__(self, network):
        self.network, self.shapes = network, []

    def run(self, batch):
        self.shapes.append(batch.shape)
        return self.network.run(batch)


def test_mtcnn_runs_stay_small_and_detect_the_same_faces(monkeypatch):
    """RNet/ONet crops go in runs of a few dozen and PNet levels in tiles, so no run's buffers reach the mmap
    threshold; the faces found are those of one run per stage (landmarks to float rounding)."""
    from gpen_video.faces.detectors.mtcnn import _ONET_RUN, _PNET_REACH, _PNET_STEP, _RNET_RUN

    image = cv2.resize(faces_image(), None, fx=2.0, fy=2.0)  # enough candidates for several RNet runs
    detector = MtcnnDetector(threads=1)
    logs = {name: _ShapeLog(getattr(detector, name)) for name in ("_pnet", "_rnet", "_onet")}
    for name, log in logs.items():
        setattr(detector, name, log)
    found = detector.detect(image)
    assert len(logs["_rnet"].shapes) > 2, "the test image gives too few candidates to need several runs"
    assert max(s[0] for s in logs["_rnet"].shapes) <= _RNET_RUN
    assert max(s[0] for s in logs["_onet"].shapes) <= _ONET_RUN
    assert max(s[1] for s in logs["_pnet"].shapes) <= _PNET_STEP + _PNET_REACH
    assert max(s[2] for s in logs["_pnet"].shapes) <= _PNET_STEP + _PNET_REACH
    from gpen_video.faces.detectors import mtcnn as module

    for name in ("_RNET_RUN", "_ONET_RUN", "_PNET_STEP"):
        monkeypatch.setattr(module, name, 10**6)  # one run per crop batch, each level whole
    whole = mtcnn().detect(image)
    assert len(found) == len(whole) >= 6
    assert np.abs(found.boxes - whole.boxes).max() < 1e-2 and np.abs(found.landmarks - whole.landmarks).max() < 1e-2


def _graphs_agree(device: str, tolerance: float, pixels: float) -> None:
    """MTCNN's three graphs run in torch on ``device`` give ONNX Runtime's outputs, and the detector built on them
    finds t1.jpg's faces at the same places."""
    from gpen_video.faces.detectors.mtcnn import _OUTPUTS, _OrtNetwork, mtcnn_weights_dir
    from gpen_video.faces.detectors.onnx_torch import TorchGraph

    rng = np.random.default_rng(5)
    shapes = {"pnet": (1, 150, 97, 3), "rnet": (17, 24, 24, 3), "onet": (12, 48, 48, 3)}
    for name, shape in shapes.items():
        path = mtcnn_weights_dir() / f"{name}.onnx"
        batch = rng.uniform(-1, 1, shape).astype(np.float32)
        want = _OrtNetwork(path, 1).run(batch)
        got = TorchGraph(path, device, _OUTPUTS[name]).run(batch)
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape and np.abs(a - b).max() < tolerance, (name, np.abs(a - b).max())
    image = faces_image()
    cpu, graph = MtcnnDetector(threads=1), MtcnnDetector(device=device)
    found, found_graph = cpu.detect(image), graph.detect(image)
    assert len(found) == len(found_graph) == 6
    assert np.abs(found.landmarks - found_graph.landmarks).max() < pixels
    refined, refined_graph = cpu.refine(image, found.anchor_boxes), graph.refine(image, found.anchor_boxes)
    assert np.abs(refined.landmarks - refined_graph.landmarks).max() < pixels


def test_mtcnn_graphs_in_torch_give_onnx_runtimes_faces():
    """The GPU detector's CPU twin: the same graphs, the same weights, torch on the CPU."""
    _graphs_agree("cpu", 1e-4, 0.01)


@pytest.mark.gpu
def test_mtcnn_graphs_on_the_gpu_give_onnx_runtimes_faces():
    """On CUDA, cuDNN's convolutions may round through TF32: the outputs agree to about 1e-3, the landmarks to a
    twentieth of a pixel."""
    _graphs_agree("cuda", 5e-3, 0.05)


def test_a_graph_with_an_unknown_operator_is_refused_when_loaded(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from gpen_video.faces.detectors.onnx_torch import TorchGraph

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])  # fmt: skip
    onnx.save(helper.make_model(graph), tmp_path / "relu.onnx")
    with pytest.raises(ModelError, match="Relu cannot run on the GPU"):
        TorchGraph(tmp_path / "relu.onnx", "cpu", ("y",))


def test_auto_falls_back_to_mtcnn_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="gpen_video.faces.detectors"):
        detector = create_detector("auto")
    assert isinstance(detector, MtcnnDetector)
    assert "mtcnn" in caplog.text


def test_factory_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="unknown face detector 'yolo'") as unknown:
        create_detector("yolo")
    with pytest.raises(ModelError, match="no scrfd model") as absent:
        create_detector("scrfd")
    with pytest.raises(ModelError, match="not found") as missing:
        create_detector(str(tmp_path / "det_10g.onnx"))
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="not a usable ONNX face detector") as broken:
        create_detector(str(bad))
    for err in (unknown, absent, missing, broken):
        assert "\n" not in str(err.value)


def fake_outputs(input_size: int, face_at: tuple[int, int, int], box: np.ndarray, kps: np.ndarray) -> list[np.ndarray]:
    """Raw SCRFD (9-output, 2 anchors) tensors with one confident face at (level, row, col)."""
    strides = (8, 16, 32)
    scores, dists, points = [], [], []
    for level, stride in enumerate(strides):
        n = (input_size // stride) ** 2 * 2
        s, d, p = np.zeros((n, 1), np.float32), np.zeros((n, 4), np.float32), np.zeros((n, 10), np.float32)
        if level == face_at[0]:
            k = (face_at[1] * (input_size // stride) + face_at[2]) * 2 + 1  # second anchor of that cell
            centre = np.array([face_at[2], face_at[1]], np.float32) * stride
            s[k] = 0.97
            d[k] = np.concatenate([centre - box[:2], box[2:] - centre]) / stride
            p[k] = ((kps - centre) / stride).reshape(-1)
        scores.append(s)
        dists.append(d)
        points.append(p)
    return scores + dists + points


def test_scrfd_decoding_of_synthetic_outputs_matches_insightface():
    from insightface.model_zoo.scrfd import distance2bbox, distance2kps

    box = np.array([100.0, 120.0, 180.0, 220.0], np.float32)
    kps = np.array([[120, 150], [160, 150], [140, 175], [125, 195], [155, 195]], np.float32)
    outputs = fake_outputs(320, (1, 10, 8), box, kps)
    boxes, scores, points = decode_outputs(outputs, 320, 320, 0.5)
    assert scores.tolist() == pytest.approx([0.97])
    np.testing.assert_allclose(boxes[0], box, atol=1e-4)
    np.testing.assert_allclose(points[0], kps, atol=1e-4)
    # the same anchors and distances through insightface's own helpers
    centres = anchor_centres(20, 20, 16, 2)
    k = int(np.argmax(outputs[1][:, 0]))
    np.testing.assert_allclose(distance2bbox(centres[k : k + 1], outputs[4][k : k + 1] * 16)[0], box, atol=1e-4)
    np.testing.assert_allclose(
        distance2kps(centres[k : k + 1], outputs[7][k : k + 1] * 16)[0].reshape(5, 2), kps, atol=1e-4
    )
    with pytest.raises(ModelError):
        decode_outputs(outputs[:6], 320, 320, 0.5)


def test_insightface_detector_runs_an_onnx_file_given_by_path(tmp_path):
    """A stand-in ONNX model with the SCRFD output layout, run end to end through the real code path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = 320
    box = np.array([64.0, 48.0, 128.0, 136.0], np.float32)
    kps = np.array([[80, 80], [112, 80], [96, 100], [84, 118], [108, 118]], np.float32)
    outputs = fake_outputs(size, (0, 12, 12), box, kps)
    names = [f"out{i}" for i in range(9)]
    nodes = [
        helper.make_node("Constant", [], [n], value=numpy_helper.from_array(o, n + "_v"))
        for n, o in zip(names, outputs, strict=True)
    ]
    graph = helper.make_graph(
        nodes,
        "scrfd_stub",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, list(o.shape))
            for n, o in zip(names, outputs, strict=True)
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "det_stub.onnx"
    onnx.save(model, str(path))
    detector = create_detector(str(path), score_threshold=0.5)
    assert isinstance(detector, InsightFaceDetector) and detector.input_size == size
    image = np.zeros((240, 640, 3), np.uint8)  # letterboxed at scale 0.5: model pixels -> image ×2
    found = detector.detect(image)
    assert len(found) == 1
    np.testing.assert_allclose(found.boxes[0], box * 2, atol=1e-3)
    np.testing.assert_allclose(found.landmarks[0], kps * 2, atol=1e-3)
    assert len(detector.detect(image, min_size=200)) == 0
    blob, scale = letterbox(image, size)
    assert blob.shape == (1, 3, size, size) and scale == pytest.approx(0.5)


def test_two_face_region_films_exactly_two_faces_at_known_places():
    """The bench's 4K two-shot: two faces in frame, and the frame is the photo's region moved by the trajectory."""
    import cv2

    from gpen_video.synthetic import TWO_FACES, FaceScene, render

    scene = FaceScene(width=960, height=540, frames=10, photo_region=TWO_FACES)
    frame = render(scene, 6)
    assert len(mtcnn().detect(frame.image)) == 2
    x0, y0, x1, y1 = TWO_FACES
    back = cv2.warpAffine(frame.image, frame.affine, (1280, 886), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    inner = (slice(y0 + 60, y1 - 60), slice(x0 + 40, x1 - 40))  # zoomed in: the region's edges leave the frame
    error = np.abs(back[inner].astype(float) - faces_image()[inner].astype(float))
    assert error.mean() < 2.0  # the same pixels after two resamplings
    assert back[: y0 - 4].max() == 0 and back[y1 + 4 :].max() == 0  # nothing outside the region is filmed


def test_big_face_refinement_crop_matches_full_size_low_pass():
    """A big face's region is shrunk before its low-pass (fast path): the 48-px crops ONet sees are those of
    blurring the whole region at full size and sampling it (a wrong transform would shift them by pixels)."""
    import cv2

    from gpen_video.faces.detectors.mtcnn import _crop_float, _region_for
    from gpen_video.synthetic import TWO_FACES, FaceScene, render

    image = render(FaceScene(width=3840, height=2160, frames=2, photo_region=TWO_FACES), 0).image
    box = np.array([1100.0, 600.0, 1640.0, 1140.0])  # a 540-px square around the left face
    region, to_region = _region_for(image, box, 640.0, 48)
    assert region.shape[0] < 300  # shrunk (from ~650 px)
    fast, to_frame = _crop_float(region, to_region, box, 48, False)

    scale = 48 / 541.0
    full = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32), (0, 0), 0.5 * (1 / scale - 1))
    slow = cv2.warpAffine(full, to_frame, (48, 48), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert np.abs(fast - slow).mean() < 1.5
    shifted = cv2.warpAffine(
        full, to_frame + np.array([[0, 0, 3.0], [0, 0, 0]]), (48, 48), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    assert np.abs(shifted - slow).mean() > 2 * np.abs(fast - slow).mean()  # the check can tell a 3-px shift


@pytest.mark.parametrize("side", ["left", "top", "right", "bottom"])
def test_big_face_region_just_beyond_the_frame_edge(side):
    """A track's predicted box can lie just outside the frame (a face leaving it while undetected): the
    region left is thinner than the shrink factor, and refining it must give a crop, not an error."""
    from gpen_video.faces.detectors.mtcnn import _crop_float, _region_for

    image = np.full((2160, 3840, 3), 128, np.uint8)
    reach, side_px = 1200.0, 1000.0
    beyond = 0.5 * reach + 3 - 2  # the region keeps ~2 px of frame, less than the shrink factor (10)
    cx = {"left": -beyond, "right": 3840 + beyond}.get(side, 1900.0)
    cy = {"top": -beyond, "bottom": 2160 + beyond}.get(side, 1000.0)
    box = np.array([cx - side_px / 2, cy - side_px / 2, cx + side_px / 2, cy + side_px / 2])
    region, to_region = _region_for(image, box, reach, 48)
    crop, _ = _crop_float(region, to_region, box, 48, False)
    assert crop.shape == (48, 48, 3) and np.isfinite(crop).all()
