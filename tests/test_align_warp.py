"""The torch (grid_sample) warp agrees with OpenCV's to one level, batched, in 8 and 16 bits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from faces_helpers import photo_landmarks

from gpen_video.align import align_faces, align_faces_torch, warp_cpu, warp_torch
from gpen_video.faces.geometry import face_to_crop
from gpen_video.faces.types import TrackedFace
from gpen_video.synthetic import faces_image


@pytest.fixture(scope="module")
def photo():
    return faces_image()


def test_torch_and_cpu_warps_agree_to_one_level_8bit(photo):
    affines = np.stack([face_to_crop(lm, 256) for lm in photo_landmarks()])
    gpu = warp_torch(torch.from_numpy(photo), affines, 256).numpy()
    assert gpu.shape == (6, 256, 256, 3) and gpu.dtype == np.uint8
    for crop, affine in zip(gpu, affines, strict=True):
        cpu = warp_cpu(photo, affine, 256)
        assert np.abs(cpu.astype(int) - crop.astype(int)).max() <= 1


def test_torch_and_cpu_warps_agree_16bit_and_at_the_borders(photo):
    image = photo.astype(np.uint16) * 257 + 3
    # rotated, scaled, and reaching outside the frame (replicated edges)
    affine = np.array([[1.7, 0.45, -140.3], [-0.45, 1.7, 60.7]])
    cpu = warp_cpu(image, affine, 300)
    gpu = warp_torch(torch.from_numpy(image.astype(np.int32)).to(torch.uint16), affine[None], 300)
    diff = np.abs(cpu.astype(np.int64) - gpu[0].to(torch.int32).numpy().astype(np.int64))
    assert diff.max() <= 257  # one 8-bit level
    assert np.mean(diff) < 1.0


def test_align_faces_torch_matches_align_faces(photo):
    faces = [TrackedFace(i, lm.astype(np.float32), np.zeros(4), 1.0) for i, lm in enumerate(photo_landmarks()[:3])]
    cpu = align_faces(photo, faces, 128, template="ffhq")
    crops, affines = align_faces_torch(torch.from_numpy(photo), faces, 128, template="ffhq")
    np.testing.assert_allclose(affines, cpu.affines)
    assert np.abs(crops.numpy().astype(int) - cpu.crops.astype(int)).max() <= 1
    # the template really differs: ffhq frames the face tighter than gpen
    gpen = align_faces(photo, faces, 128, template="gpen")
    assert abs(np.linalg.det(gpen.affines[0, :, :2])) < abs(np.linalg.det(cpu.affines[0, :, :2]))


def test_warp_torch_float_and_empty(photo):
    image = torch.from_numpy(photo.astype(np.float32))
    out = warp_torch(image, np.zeros((0, 2, 3)), 64)
    assert out.shape == (0, 64, 64, 3)
    shift = np.array([[1.0, 0.0, -10.25], [0.0, 1.0, -20.5]])  # a pure sub-pixel shift
    crop = warp_torch(image, shift[None], 64)[0].numpy()
    expected = 0.75 * photo[20, 10] / 2 + 0.25 * photo[20, 11] / 2 + 0.75 * photo[21, 10] / 2 + 0.25 * photo[21, 11] / 2
    np.testing.assert_allclose(crop[0, 0], expected, atol=1e-3)


def test_auto_template_is_the_models_own():
    """``align.template: auto`` aligns crops the way the model was made: the official template for GPEN's own
    checkpoints, FaceFusion's ffhq_512 / arcface_128_v2 for its exports, the official one for unknown files."""
    from gpen_video.faces.geometry import TEMPLATES
    from gpen_video.models.registry import resolve_template

    assert resolve_template("auto", "gpen-bfr-2048") == "gpen"
    assert resolve_template("auto", "gpen-bfr-2048-onnx") == "ffhq"
    assert resolve_template("auto", "gpen_bfr_256.onnx") == "arcface_128"
    assert resolve_template("auto", "/somewhere/my_finetune.pth") == "gpen"
    assert resolve_template("ffhq", "gpen-bfr-2048") == "ffhq", "an explicit choice is kept"
    # FaceFusion's arcface_128_v2, as published (fractions of the 128 px crop)
    assert np.allclose(TEMPLATES["arcface_128"][0], [0.36167656, 0.40387734], atol=1e-7)
    assert np.allclose(TEMPLATES["arcface_128"][4], [0.61507734, 0.72034453], atol=1e-7)
