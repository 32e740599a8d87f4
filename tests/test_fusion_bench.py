"""bench/fusion_bench.py's pure helpers (issue 26): the masked PSNR, the face and feature masks, the known motion
between frames, the motion-compensated flicker and the per-frame degradation. No clip is written, no CLI run."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from fusion_bench import (
    CaseResult,
    Degrade,
    FusionReport,
    Quality,
    degrade_frame,
    flicker,
    frame_masks,
    frame_motions,
    map_points,
    masked_psnr,
)

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
#: a face in a 120×120 picture: box (x0, y0, x1, y1) and landmarks (eyes, nose, mouth corners)
BOX = np.array([[30.0, 20.0, 90.0, 100.0]])
LANDMARKS = np.array([[[47.0, 50.0], [73.0, 50.0], [60.0, 64.0], [50.0, 80.0], [70.0, 80.0]]])


def test_masked_psnr_counts_only_the_masked_pixels():
    truth = np.full((2, 8, 8, 3), 100, np.uint8)
    other = truth.copy()
    mask = np.zeros((2, 8, 8), bool)
    mask[:, 2:6, 2:6] = True
    other[mask] += 5  # an error of 5 grey levels inside the mask
    other[~mask] = 0  # and a large one outside, which must not count
    assert masked_psnr(other, truth, mask) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-9)
    assert masked_psnr(truth, truth, mask) == math.inf
    assert math.isnan(masked_psnr(other, truth, np.zeros_like(mask)))


def test_masks_cover_the_landmarks_they_are_made_from():
    face, features, mouth = frame_masks(BOX, LANDMARKS, IDENTITY, (120, 120))
    for x, y in LANDMARKS[0]:
        assert face[round(y), round(x)], (x, y)
    for x, y in LANDMARKS[0][[0, 1, 3, 4]]:  # eyes and mouth corners
        assert features[round(y), round(x)], (x, y)
    assert mouth[80, 50] and mouth[80, 70] and not mouth[50, 47] and not mouth[50, 73]
    assert not features[64, 60]  # the nose lies between the boxes
    assert (features <= face).all()
    assert not face[5, 5] and not face[110, 110]


def test_masks_follow_the_affine_into_the_frame():
    angle, scale = math.radians(20), 1.5
    affine = np.array([[scale * math.cos(angle), -scale * math.sin(angle), 40.0],
                       [scale * math.sin(angle), scale * math.cos(angle), 10.0]])  # fmt: skip
    _, features, _ = frame_masks(BOX, LANDMARKS, affine, (240, 240))
    for x, y in map_points(LANDMARKS[0][[0, 1, 3, 4]], affine):
        assert features[round(y), round(x)], (x, y)


def test_frame_motion_carries_each_frame_to_the_next():
    a0 = np.array([[0.5, 0.0, 10.0], [0.0, 0.5, 20.0]])
    a1 = np.array([[0.6, -0.1, 13.0], [0.1, 0.6, 18.0]])
    (motion,) = frame_motions(np.stack([a0, a1]), 2)
    photo = np.array([[100.0, 200.0], [300.0, 50.0]])
    assert map_points(map_points(photo, a0), motion) == pytest.approx(map_points(photo, a1))
    assert frame_motions(None, 3) == [pytest.approx(IDENTITY)] * 2


def test_flicker_takes_the_known_motion_out():
    rng = np.random.default_rng(1)
    picture = cv2.GaussianBlur(rng.integers(0, 256, (64, 80, 3)).astype(np.uint8), (0, 0), 2.0)
    moved = np.roll(picture, 3, axis=1)  # the camera moved 3 px to the right
    images = np.stack([picture, moved])
    masks = np.zeros((2, 64, 80), bool)
    masks[:, 16:48, 20:60] = True
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, 0.0]])
    assert flicker(images, masks, [shift]) == pytest.approx(0.0, abs=1e-4)
    assert flicker(images, masks, [IDENTITY]) > 1.0
    assert flicker(np.stack([picture, picture]), masks, [IDENTITY]) == 0.0


def test_noise_is_fresh_each_frame_and_seeded():
    image = np.full((64, 64, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    first, second = (degrade_frame(image, Degrade("noise", 8.0), rng) for _ in range(2))
    assert np.std(first.astype(float) - 128) == pytest.approx(8.0, rel=0.05)
    assert not np.array_equal(first, second)
    again = degrade_frame(image, Degrade("noise", 8.0), np.random.default_rng(0))
    assert np.array_equal(first, again)
    assert degrade_frame(image, Degrade("none", 0.0), rng) is image
    assert degrade_frame(image, Degrade("mixed", 8.0), rng).shape == image.shape


def test_worst_mouth_gain_and_flicker_fall():
    def q(mouth: tuple[float, ...], flick: float) -> Quality:
        return Quality(30.0, 30.0, mouth, flick)

    result = CaseResult("talking", 2, 3, 3, 1.0, q((9.0,) * 3, 5.0), q((9.0, 9.0, 9.0), 5.0),
                        q((0.9, 9.0, 18.0), 2.0), 1.0, 1.2, 0.5, FusionReport())  # fmt: skip
    assert result.worst_mouth_gain == pytest.approx(10 * math.log10(0.5))
    assert result.flicker_fall == pytest.approx(4.0)  # (5 - 1) / (2 - 1): the excess over the truth's own
    assert result.extra_cpu_ms == pytest.approx(1000 * 0.2 / 3)
