"""The per-face input quality (``faces.quality``) against degradations of known size applied with OpenCV to the six
real faces of insightface's ``t1.jpg``: the truth is the degradation (how much blur, how small a source, how hard
a JPEG, how much noise), never the figure's own output."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache

import cv2
import numpy as np
import pytest
from faces_helpers import photo_landmarks

from gpen_video.faces.quality import TOO_DEGRADED, face_quality
from gpen_video.faces.types import face_scale
from gpen_video.synthetic import faces_image

FACES = range(6)
TIE = 0.02  # a step of a degradation may leave a figure this much higher (a tie), no more
PAD = 2.5  # face scales of the photo kept around each face


@cache
def face(index: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo cut around one face (read-only), and its landmarks there."""
    image, landmarks = faces_image(), photo_landmarks()[index]
    reach, centre = PAD * face_scale(landmarks), landmarks.mean(axis=0)
    x0, y0 = (max(int(v), 0) for v in centre - reach)
    x1, y1 = int(min(centre[0] + reach, image.shape[1])), int(min(centre[1] + reach, image.shape[0]))
    region = image[y0:y1, x0:x1].copy()
    region.flags.writeable = False
    return region, landmarks - np.array([x0, y0])


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0 else image


def down_up(image: np.ndarray, factor: int) -> np.ndarray:
    """Made ``factor`` times smaller (area) and back to its size (cubic): a source of 1/factor the resolution."""
    if factor == 1:
        return image
    height, width = image.shape[:2]
    small = cv2.resize(image, (round(width / factor), round(height / factor)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def noisy(image: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).round().astype(np.uint8)


def shrunk(image: np.ndarray, landmarks: np.ndarray, scale_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The region made smaller (area) so the face's scale is ``scale_px``, and its landmarks there."""
    height, width = image.shape[:2]
    factor = scale_px / face_scale(landmarks)
    small = cv2.resize(image, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
    ratio = np.array([small.shape[1] / width, small.shape[0] / height])
    return small, (landmarks + 0.5) * ratio - 0.5


def series(index: int, degrade: Callable[[np.ndarray, float], np.ndarray], amounts: list) -> list:
    image, landmarks = face(index)
    return [face_quality(degrade(image, amount), landmarks) for amount in amounts]


def assert_falls(values: list[float], least_drop: float, what: str) -> None:
    """Each step no higher than the one before (up to a tie), and the whole series down by ``least_drop``."""
    rises = [b - a for a, b in itertools.pairwise(values)]
    assert max(rises) <= TIE, f"{what} rose along the series: {np.round(values, 3)}"
    assert values[0] - values[-1] >= least_drop, f"{what} hardly fell: {np.round(values, 3)}"


@pytest.mark.parametrize("index", FACES)
def test_detail_and_score_fall_with_blur(index):
    found = series(index, blurred, [0, 0.5, 1, 2, 3, 4])
    assert_falls([q.detail for q in found], 0.4, "detail")
    assert_falls([q.score for q in found], 0.4, "score")


@pytest.mark.parametrize("index", FACES)
def test_detail_and_score_fall_with_a_smaller_source(index):
    found = series(index, down_up, [1, 2, 4, 8])
    assert_falls([q.detail for q in found], 0.4, "detail")
    assert_falls([q.score for q in found], 0.4, "score")


@pytest.mark.parametrize("index", FACES)
def test_detail_and_score_fall_with_jpeg_compression(index):
    found = series(index, jpeg, [90, 40, 15])
    assert_falls([q.detail for q in found], 0.12, "detail")
    assert_falls([q.score for q in found], 0.12, "score")


@pytest.mark.parametrize("index", FACES)
def test_detail_falls_with_the_face_size(index):
    image, landmarks = face(index)
    found = [face_quality(*shrunk(image, landmarks, px)) for px in (24, 16, 12, 8)]
    assert_falls([q.detail for q in found], 0.25, "detail")
    assert [round(q.face_px) for q in found] == [24, 16, 12, 8]


@pytest.mark.parametrize("index", FACES)
def test_noise_is_not_detail(index):
    image, landmarks = face(index)
    clean, with_noise = face_quality(image, landmarks), face_quality(noisy(image, 8), landmarks)
    assert abs(with_noise.detail - clean.detail) <= 0.1
    assert with_noise.score < clean.score  # noise hides some of what is there
    blurred_face = face_quality(blurred(image, 2), landmarks)
    blurred_noisy = face_quality(noisy(blurred(image, 2), 8), landmarks)
    assert blurred_noisy.detail <= blurred_face.detail + 0.05
    assert blurred_noisy.detail < clean.detail - 0.3


@pytest.mark.parametrize("index", FACES)
@pytest.mark.parametrize("sigma", [4, 8, 16])
def test_noise_is_measured(index, sigma):
    image, landmarks = face(index)
    found = face_quality(noisy(image, sigma), landmarks).noise
    assert abs(found / sigma - 1.0) <= 0.3, f"noise sigma {sigma} read as {found:.2f}"


@pytest.mark.parametrize("index", FACES)
def test_too_degraded_names_the_faces_with_too_little_left(index):
    image, landmarks = face(index)
    clean = face_quality(image, landmarks)
    assert clean.score > TOO_DEGRADED and clean.verdict() == "restorable" and not clean.too_degraded
    tiny = face_quality(*shrunk(image, landmarks, 8))
    assert tiny.score < TOO_DEGRADED and tiny.verdict() == "too_degraded"
    assert face_quality(down_up(image, 8), landmarks).too_degraded


@pytest.mark.parametrize("index", FACES)
def test_a_larger_copy_gains_no_detail(index):
    image, landmarks = face(index)
    height, width = image.shape[:2]
    larger = cv2.resize(image, (3 * width, 3 * height), interpolation=cv2.INTER_CUBIC)
    clean, enlarged = face_quality(image, landmarks), face_quality(larger, (landmarks + 0.5) * 3 - 0.5)
    assert enlarged.face_px == pytest.approx(3 * clean.face_px)
    assert enlarged.detail <= clean.detail + 0.1


def moved(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    frame = np.full((height + 140, width + 90, 3), 90, np.uint8)
    frame[101 : 101 + height, 37 : 37 + width] = image
    return frame, landmarks + np.array([37, 101])


def rotated(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D(tuple(landmarks.mean(axis=0)), 10.0, 1.0)
    frame = cv2.warpAffine(image, turn, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return frame, landmarks @ turn[:, :2].T + turn[:, 2]


def mirrored(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flipped left to right; the landmarks keep the project's on-screen order (left eye on screen first)."""
    points = landmarks.copy()
    points[:, 0] = image.shape[1] - 1 - points[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), points[[1, 0, 2, 4, 3]]


def sixteen_bit(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return image.astype(np.uint16) * 257, landmarks


@pytest.mark.parametrize("index", FACES)
@pytest.mark.parametrize("change", [moved, rotated, mirrored, sixteen_bit], ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "degrade", [lambda i: i, lambda i: blurred(i, 2), lambda i: down_up(i, 4)], ids=["clean", "blur2", "x4"]
)
def test_the_figure_follows_the_face(index, change, degrade):
    image, landmarks = face(index)
    before = face_quality(degrade(image), landmarks)
    after = face_quality(*change(degrade(image), landmarks))
    assert after.face_px == pytest.approx(before.face_px, rel=1e-6)
    assert after.detail == pytest.approx(before.detail, abs=0.05)
    assert after.score == pytest.approx(before.score, abs=0.05)
    assert after.noise == pytest.approx(before.noise, abs=0.3)


def test_a_face_at_the_frame_edge_or_outside_it():
    image, landmarks = face(4)
    half = face_quality(image, landmarks - np.array([landmarks[:, 0].mean(), 0]))
    assert 0.0 <= half.score <= 1.0 and 0.0 <= half.detail <= 1.0 and np.isfinite(half.noise)
    gone = face_quality(image, landmarks + np.array([10 * image.shape[1], 0]))
    assert gone.score == 0.0 and gone.too_degraded


def test_only_8_and_16_bit_frames():
    image, landmarks = face(0)
    with pytest.raises(TypeError):
        face_quality(image.astype(np.float32), landmarks)
