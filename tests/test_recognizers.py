"""The face recognisers (``faces.recognizers``) on real faces: the six people of insightface's t1.jpg.

The truth is the photo itself: its six faces are six different people, and a face moved, scaled, rotated,
compressed or blurred by OpenCV is still its own person. Landmarks on the transformed pictures are MTCNN's, found
again on each (as a run has them), not carried from the original. ArcFace's real weights cannot be had here: its
preprocessing is checked on a tiny ONNX graph with ``w600k_r50.onnx``'s input and output, against insightface's
own ``norm_crop`` and ``blobFromImages``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from faces_helpers import mtcnn, photo_landmarks

from gpen_video.errors import ConfigError, DependencyError, ModelError
from gpen_video.faces.recognizers import create_recognizer, recognizer_available
from gpen_video.faces.recognizers.arcface import ArcFaceRecognizer
from gpen_video.faces.recognizers.dlib_resnet import DlibRecognizer
from gpen_video.faces.types import face_box, face_scale
from gpen_video.synthetic import faces_image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dlib_model() -> DlibRecognizer:
    return DlibRecognizer()


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, np.ndarray]:
    """t1.jpg and its six faces' landmarks (MTCNN on the clean photo), (6, 5, 2), left to right."""
    return faces_image(), photo_landmarks()


@pytest.fixture(scope="module")
def originals(dlib_model, photo) -> np.ndarray:
    image, landmarks = photo
    return dlib_model.embed(image, landmarks)


def _identity() -> np.ndarray:
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _transformed(name: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """t1.jpg under one OpenCV transform, and the 2×3 map from the photo to it."""
    h, w = image.shape[:2]
    if name.startswith("scale"):
        s = float(name[5:])
        interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        return cv2.resize(image, None, fx=s, fy=s, interpolation=interpolation), np.array([[s, 0, 0], [0, s, 0.0]])
    if name.startswith("rotate"):
        affine = cv2.getRotationMatrix2D((w / 2, h / 2), float(name[6:]), 1.0)
    elif name == "shift":
        affine = np.array([[1.0, 0.0, 13.3], [0.0, 1.0, -7.7]])
    elif name == "jpeg40":
        _, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 40])
        return cv2.imdecode(buffer, cv2.IMREAD_COLOR), _identity()
    else:  # blur
        return cv2.GaussianBlur(image, (0, 0), 1.5), _identity()
    return cv2.warpAffine(image, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), affine


def _redetected(image: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """MTCNN's landmarks on ``image`` of each face whose true landmarks are ``carried`` (6, 5, 2)."""
    found = mtcnn().detect(image).landmarks.astype(np.float64)
    picked = []
    for truth in carried:
        gap = np.linalg.norm(found.mean(1) - truth.mean(0), axis=1)
        k = int(np.argmin(gap))
        assert gap[k] < 0.5 * face_scale(truth), "MTCNN lost a face of the transformed photo"
        picked.append(found[k])
    return np.stack(picked)


def test_different_people_are_farther_apart_than_the_threshold(dlib_model, originals):
    distances = dlib_model.distance(originals, originals)
    assert distances.shape == (6, 6)
    assert np.allclose(np.diag(distances), 0.0, atol=1e-6)
    assert distances[~np.eye(6, dtype=bool)].min() > dlib_model.threshold
    assert originals.dtype == np.float32 and originals.shape == (6, 128)


@pytest.mark.parametrize("name", ["shift", "scale0.6", "scale1.25", "rotate-8", "rotate6", "jpeg40", "blur"])
def test_the_same_face_under_a_transform_stays_within_the_threshold(dlib_model, photo, originals, name):
    image, landmarks = photo
    moved, affine = _transformed(name, image)
    found = _redetected(moved, landmarks @ affine[:, :2].T + affine[:, 2])
    distances = dlib_model.distance(dlib_model.embed(moved, found), originals)
    assert np.diag(distances).max() < dlib_model.threshold - 0.15  # measured: at most 0.27
    assert list(distances.argmin(axis=1)) == list(range(6)), "a face's nearest original is another person"


def test_a_strongly_rolled_face_is_still_itself(dlib_model, photo, originals):
    """dlib's predictor starts upright; the recogniser levels each face first, so 40° of roll changes little."""
    image, landmarks = photo
    padded = cv2.copyMakeBorder(image, 400, 400, 400, 400, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    h, w = padded.shape[:2]
    affine = cv2.getRotationMatrix2D((w / 2, h / 2), 40.0, 1.0)
    rolled = cv2.warpAffine(padded, affine, (w, h), flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128))
    carried = (landmarks + 400.0) @ affine[:, :2].T + affine[:, 2]
    distances = dlib_model.distance(dlib_model.embed(rolled, carried), originals)
    assert np.diag(distances).max() < dlib_model.threshold - 0.3


def test_embeddings_do_not_depend_on_where_the_face_sits(dlib_model, photo, originals):
    image, landmarks = photo
    top, left = 101, 37
    padded = cv2.copyMakeBorder(image, top, 60, left, 250, cv2.BORDER_REFLECT)
    moved = dlib_model.embed(padded, landmarks + np.array([left, top], np.float64))
    assert np.abs(np.diag(dlib_model.distance(moved, originals))).max() < 0.01
    one_by_one = np.concatenate([dlib_model.embed(image, landmarks[k : k + 1]) for k in (4, 0)])
    assert np.abs(np.diag(dlib_model.distance(one_by_one, originals[[4, 0]]))).max() < 1e-5


def _swapped(image: np.ndarray, landmarks: np.ndarray, source: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each place k gets face ``source[k]``, moved by the similarity of the two faces' landmarks (OpenCV) and
    blended in under a feathered ellipse; returns the picture and where the pasted faces' landmarks now are."""
    out = image.astype(np.float32)
    pasted = np.zeros_like(landmarks)
    for place, face in enumerate(source):
        affine, _ = cv2.estimateAffinePartial2D(landmarks[face], landmarks[place], method=cv2.LMEDS)
        warped = cv2.warpAffine(image, affine, image.shape[1::-1], flags=cv2.INTER_LINEAR)
        pasted[place] = landmarks[face] @ affine[:, :2].T + affine[:, 2]
        x0, y0, x1, y1 = face_box(pasted[place])
        mask = np.zeros(image.shape[:2], np.float32)
        centre = (round((x0 + x1) / 2), round((y0 + y1) / 2))
        cv2.ellipse(mask, centre, (round((x1 - x0) * 0.55), round((y1 - y0) * 0.55)), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.08 * (x1 - x0))[..., None]
        out = out * (1 - mask) + warped.astype(np.float32) * mask
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), pasted


def test_a_face_pasted_into_another_ones_place_is_its_own_person(dlib_model, photo, originals):
    image, landmarks = photo
    for shift in (1, 3):
        source = [(k + shift) % 6 for k in range(6)]
        swapped, pasted = _swapped(image, landmarks, source)
        distances = dlib_model.distance(dlib_model.embed(swapped, pasted), originals)
        for place, face in enumerate(source):
            assert distances[place, face] < dlib_model.threshold, f"face {face} in place {place}"
            assert distances[place, place] > dlib_model.threshold, f"place {place} still reads as its own face"
            assert distances[place].argmin() == face


def test_no_face_gives_no_embedding(dlib_model, photo):
    assert dlib_model.embed(photo[0], np.zeros((0, 5, 2))).shape == (0, 128)


def test_importing_the_recognisers_neither_imports_dlib_nor_prints():
    """dlib is imported when its recogniser is made, and making it needs no pkg_resources and prints nothing."""
    code = (
        "import sys\n"
        "from gpen_video.faces.recognizers import create_recognizer\n"
        "assert 'dlib' not in sys.modules\n"
        "create_recognizer('dlib')\n"
        "assert 'dlib' in sys.modules and 'pkg_resources' not in sys.modules\n"
        "assert 'face_recognition_models' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


# --- the factory ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_dlib(monkeypatch, tmp_path) -> Path:
    """dlib cannot be imported, and insightface's model folder is an empty temporary one (returned)."""
    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    return tmp_path / "models"


def test_without_any_recogniser_the_factory_says_what_to_install(no_dlib):
    assert not recognizer_available()
    with pytest.raises(DependencyError) as caught:
        create_recognizer("auto")
    message = str(caught.value)
    assert "\n" not in message and "gpen-video[identity]" in message and "w600k_r50.onnx" in message
    with pytest.raises(DependencyError, match=r"gpen-video\[identity\]") as caught:
        create_recognizer("dlib")
    assert "\n" not in str(caught.value)
    with pytest.raises(ModelError, match=r"w600k_r50\.onnx"):
        create_recognizer("arcface")
    with pytest.raises(ConfigError, match="auto, dlib, arcface"):
        create_recognizer("facenet")


def test_auto_takes_dlib_where_it_is_installed(photo):
    assert recognizer_available()
    assert create_recognizer().name == "dlib"


# --- ArcFace on a tiny graph ---------------------------------------------------------------------------------

POOL = 14  # the tiny graph averages 14×14 blocks: 3×8×8 values, projected to 512


def _tiny_arcface(path: Path, batch: int | str = "None", size: int = 112) -> np.ndarray:
    """An ONNX graph with w600k_r50's input ("input.1", N×3×112×112) and output ("683", N×512): block means
    times a fixed projection. Returns the projection (192×512)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cells = size // POOL
    weights = np.random.default_rng(5).normal(0, 1, (3 * cells * cells, 512)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[POOL, POOL], strides=[POOL, POOL]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [batch, 512])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return weights


def _insightface_reference(image: np.ndarray, landmarks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """What insightface's ArcFaceONNX would feed the tiny graph and get back: its norm_crop and blobFromImages."""
    from insightface.utils.face_align import norm_crop

    crops = [norm_crop(image, face.astype(np.float32), 112) for face in landmarks]
    blob = cv2.dnn.blobFromImages(crops, 1.0 / 127.5, (112, 112), (127.5, 127.5, 127.5), swapRB=True)
    cells = 112 // POOL
    pooled = blob.reshape(len(crops), 3, cells, POOL, cells, POOL).mean(axis=(3, 5)).reshape(len(crops), -1)
    raw = pooled @ weights
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # insightface's norm_crop calls a deprecated scikit-image API
def test_arcface_aligns_and_normalises_as_insightface_does(tmp_path, photo):
    image, landmarks = photo
    weights = _tiny_arcface(tmp_path / "w600k_r50.onnx")
    model = ArcFaceRecognizer(tmp_path / "w600k_r50.onnx", threads=1)
    expected = _insightface_reference(image, landmarks, weights)
    got = model.embed(image, landmarks)
    assert got.shape == (6, 512) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.abs(got - expected).max() < 2e-3
    # the crop itself: the eyes land on arcface_dst's eye points (what the network is trained with)
    crop = model.crops(image, landmarks[:1])[0]
    from insightface.utils.face_align import norm_crop

    reference = norm_crop(image, landmarks[0].astype(np.float32), 112)
    assert np.abs(crop.astype(int) - reference.astype(int)).mean() < 0.05


def test_arcface_with_a_batch_of_one_runs_the_faces_one_at_a_time(tmp_path, photo):
    image, landmarks = photo
    _tiny_arcface(tmp_path / "free.onnx")
    _tiny_arcface(tmp_path / "single.onnx", batch=1)
    free = ArcFaceRecognizer(tmp_path / "free.onnx", threads=1).embed(image, landmarks)
    single = ArcFaceRecognizer(tmp_path / "single.onnx", threads=1).embed(image, landmarks)
    assert np.allclose(free, single, atol=1e-5)
    assert ArcFaceRecognizer(tmp_path / "free.onnx").embed(image, np.zeros((0, 5, 2))).shape == (0, 512)


def test_arcface_distance_is_one_minus_cosine(tmp_path):
    _tiny_arcface(tmp_path / "w.onnx")
    model = ArcFaceRecognizer(tmp_path / "w.onnx", threads=1)
    a = np.array([[1.0, 0.0], [0.0, 3.0]], np.float32)
    b = np.array([[2.0, 0.0], [0.0, -1.0], [1.0, 1.0]], np.float32)
    expected = np.array([[0.0, 1.0, 1 - 0.5**0.5], [1.0, 2.0, 1 - 0.5**0.5]])
    assert np.allclose(model.distance(a, b), expected, atol=1e-6)
    assert 0.0 < model.threshold < 1.0


def test_a_graph_that_is_not_arcface_is_refused(tmp_path):
    _tiny_arcface(tmp_path / "small.onnx", size=56)
    with pytest.raises(ModelError, match="not an ArcFace recogniser"):
        ArcFaceRecognizer(tmp_path / "small.onnx")


def test_the_factory_finds_arcface_in_insightfaces_folder(no_dlib, tmp_path, photo):
    _tiny_arcface(no_dlib / "buffalo_l" / "w600k_r50.onnx")
    assert recognizer_available()
    auto = create_recognizer("auto", threads=1)
    assert isinstance(auto, ArcFaceRecognizer) and auto.name == "arcface"
    assert isinstance(create_recognizer("arcface"), ArcFaceRecognizer)
    by_path = create_recognizer(str(no_dlib / "buffalo_l" / "w600k_r50.onnx"))
    image, landmarks = photo
    assert np.allclose(by_path.embed(image, landmarks[:2]), auto.embed(image, landmarks[:2]), atol=1e-6)
