"""Align → identity restore → compose is nearly lossless in the face and bit-exact outside the mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from faces_helpers import photo_landmarks, to_frame

from gpen_video.align import align_faces, compose, feather_mask
from gpen_video.align.compose import match_colour, shrink_factor
from gpen_video.config import ComposeConfig
from gpen_video.errors import ConfigError
from gpen_video.faces.geometry import TEMPLATES, face_to_crop, template_points, umeyama_similarity
from gpen_video.faces.types import TrackedFace
from gpen_video.restore.restorer import IdentityRestorer
from gpen_video.synthetic import FaceScene, render

SIZE = 256


@pytest.fixture(scope="module")
def frame():
    return render(FaceScene(width=960, height=540, degrade=0.3), 7)


def faces_of(frame) -> list[TrackedFace]:
    return [
        TrackedFace(i, to_frame(p, frame.affine).astype(np.float32), np.zeros(4, np.float32), 1.0)
        for i, p in enumerate(photo_landmarks())
    ]


def psnr(a: np.ndarray, b: np.ndarray, top: float) -> float:
    err = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(top**2 / max(err, 1e-12)))


def to8(crops: np.ndarray) -> np.ndarray:
    return crops if crops.dtype == np.uint8 else np.clip(np.rint(crops / 257.0), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("color_match", [False, True])
def test_identity_round_trip_is_nearly_lossless_and_exact_outside(frame, depth, color_match):
    image = frame.image if depth == 8 else frame.image.astype(np.uint16) * 257 + 77
    top = 255.0 if depth == 8 else 65535.0
    batch = align_faces(image, faces_of(frame), SIZE)
    assert batch.crops.shape == (6, SIZE, SIZE, 3) and batch.crops.dtype == image.dtype
    restored = IdentityRestorer(SIZE).restore(to8(batch.crops))
    result = compose(image, restored, batch, ComposeConfig(blend=1.0, color_match=color_match))
    assert result.image.shape == image.shape and result.image.dtype == image.dtype
    face_region = result.mask > 0.5
    assert face_region.sum() > 6 * 400  # six faces really were pasted
    assert psnr(result.image[face_region], image[face_region], top) >= 40.0
    untouched = result.mask == 0
    assert untouched.mean() > 0.5
    assert np.array_equal(result.image[untouched], image[untouched])


@pytest.mark.parametrize("size", [1024, 2048])
def test_a_crop_far_bigger_than_its_face_is_pasted_without_aliasing(frame, size):
    """Detail a restorer puts in at the crop's resolution that the frame cannot hold (a one-pixel checkerboard of a
    2048-px crop on a face whose crop covers ~200 frame px) must come out as what it averages to, flat grey, not
    as the moiré a warp that skips crop pixels makes. The round trip of the face itself stays nearly lossless."""
    image = frame.image
    batch = align_faces(image, faces_of(frame), size)
    assert shrink_factor(batch.affines, size) >= 4
    config = ComposeConfig(blend=1.0, color_match=False)
    ys, xs = np.mgrid[0:size, 0:size]
    board = np.repeat((((xs + ys) % 2) * 255).astype(np.uint8)[None, ..., None], 6, axis=0).repeat(3, axis=-1)
    pasted = compose(image, board, batch, config)
    inside = pasted.mask > 0.999
    assert inside.sum() > 6 * 400
    grey = pasted.image[inside].astype(np.float64)
    assert np.abs(grey - 127.5).max() <= 3.0, (grey.min(), grey.max())
    restored = IdentityRestorer(size).restore(batch.crops)
    result = compose(image, restored, batch, config)
    face_region = result.mask > 0.5
    assert psnr(result.image[face_region], image[face_region], 255.0) >= 38.0


def test_a_different_face_changes_only_pixels_under_the_mask(frame):
    image = frame.image
    batch = align_faces(image, faces_of(frame)[:2], SIZE)
    restored = np.full((2, SIZE, SIZE, 3), 255, np.uint8)  # a "restorer" that paints the crop white
    result = compose(image, restored, batch, ComposeConfig(blend=0.8, color_match=False))
    changed = np.any(result.image != image, axis=-1)
    assert changed.sum() > 500
    assert np.all(result.mask[changed] > 0)  # every change is inside the reported mask
    assert result.mask.max() == pytest.approx(0.8, abs=1e-6)  # --blend: at most 80 % restored face
    inside = np.isclose(result.mask, 0.8)
    assert inside.sum() > 500
    expected = np.rint(image[inside].astype(np.float64) * 0.2 + 255 * 0.8)
    assert np.abs(result.image[inside].astype(np.float64) - expected).max() <= 1


def test_overlapping_faces_blend_without_seam():
    image = np.full((200, 300, 3), 100, np.uint8)
    lm = np.array(template_points("gpen", 100)) + np.array((50, 50))
    faces = [
        TrackedFace(0, lm.astype(np.float32), np.zeros(4), 1.0),
        TrackedFace(1, (lm + np.array((40, 0))).astype(np.float32), np.zeros(4), 1.0),
    ]
    batch = align_faces(image, faces, 128)
    restored = np.stack([np.full((128, 128, 3), 200, np.uint8), np.full((128, 128, 3), 220, np.uint8)])
    result = compose(image, restored, batch, ComposeConfig(blend=1.0, color_match=False))
    row = result.image[110, :, 0].astype(int)
    assert row.min() == 100 and row.max() == 220
    inner = row[np.argmax(row == 200) : len(row) - np.argmax(row[::-1] == 220)]  # face 1 full .. face 2 full
    assert (inner == 210).sum() > 10  # where both masks are full the faces mix evenly
    assert np.abs(np.diff(inner)).max() <= 3  # and hand over gradually: no seam where they meet
    # the regions compose names hold every pasted pixel (the splice looks nowhere else), one a face
    assert result.regions is not None and len(result.regions) == 2
    outside = np.ones(result.mask.shape, bool)
    for x0, y0, x1, y1 in result.regions:
        outside[y0:y1, x0:x1] = False
    assert result.mask[~outside].max() > 0 and not result.mask[outside].any()
    assert (result.image[outside] == image[outside]).all()


def test_colour_match_pulls_a_tinted_face_back_to_the_source(frame):
    image = frame.image
    batch = align_faces(image, faces_of(frame)[:1], SIZE)
    tinted = np.clip(batch.crops.astype(int) + np.array([0, 0, 40]), 0, 255).astype(np.uint8)  # redder
    plain = compose(image, tinted, batch, ComposeConfig(blend=1.0, color_match=False))
    matched = compose(image, tinted, batch, ComposeConfig(blend=1.0, color_match=True))
    m = plain.mask > 0.5
    err_plain = np.abs(plain.image[m].astype(float) - image[m]).mean()
    err_matched = np.abs(matched.image[m].astype(float) - image[m]).mean()
    assert err_matched < 0.25 * err_plain


@pytest.mark.parametrize("depth", [8, 16])
def test_colour_match_gives_the_source_mean_and_spread_in_opencvs_ycrcb(frame, depth):
    """OpenCV's BT.601 YCrCb is the reference space: the matched face's mean and spread there are its source's."""
    image = frame.image if depth == 8 else frame.image.astype(np.uint16) * 257 + 77
    top = 255.0 if depth == 8 else 65535.0
    source = align_faces(image, faces_of(frame)[:1], SIZE).crops[0]
    face = np.clip(to8(source[None])[0] * np.array([0.8, 0.95, 1.1]) + 6, 0, 255).astype(np.uint8)  # warm, dark
    mask = np.array(feather_mask(SIZE, 0.04, 0.08))
    inside = mask > 0.5

    def ycrcb(bgr: np.ndarray, scale: float) -> np.ndarray:
        return cv2.cvtColor(bgr.astype(np.float32) / np.float32(scale), cv2.COLOR_BGR2YCrCb)[inside]

    theirs = ycrcb(source, top)
    assert np.abs(ycrcb(face, 255.0).mean(0) - theirs.mean(0)).max() > 0.02  # there was a shift to undo
    ours = ycrcb(match_colour(face, source, mask, top), top)
    assert np.abs(ours.mean(0) - theirs.mean(0)).max() < 2e-3  # subsampled statistics: close, not exact
    assert np.allclose(ours.std(0), theirs.std(0), rtol=0.05)


def test_templates_match_the_spec_and_umeyama_recovers_a_similarity():
    gpen = template_points("gpen", 2048)
    np.testing.assert_allclose(gpen[0], (808.16, 971.54), atol=0.01)
    np.testing.assert_allclose(gpen[4], (1203.56, 1465.35), atol=0.01)
    np.testing.assert_allclose(template_points("ffhq", 2048)[2], (1026.5, 1256.1), atol=0.1)
    angle, scale = 0.3, 1.7
    truth = np.array(
        [[scale * np.cos(angle), -scale * np.sin(angle), 12.5], [scale * np.sin(angle), scale * np.cos(angle), -3.25]]
    )
    src = TEMPLATES["gpen"] * 100
    dst = src @ truth[:, :2].T + truth[:, 2]
    np.testing.assert_allclose(umeyama_similarity(src, dst), truth, atol=1e-9)
    lm = dst
    np.testing.assert_allclose(
        np.asarray(lm) @ face_to_crop(lm, 512)[:, :2].T + face_to_crop(lm, 512)[:, 2], src * 5.12, atol=1e-6
    )
    with pytest.raises(ConfigError):
        template_points("nope", 512)


def test_feather_mask_is_zero_at_the_crop_edge_and_one_in_the_middle():
    m = feather_mask(512, 0.04, 0.08)
    assert m[0].max() == 0 and m[:, -1].max() == 0
    assert m[256, 256] == 1.0 and m.dtype == np.float32
    assert feather_mask(512, 0.1, 0.08)[256, 60] < m[256, 60]  # more erosion, smaller mask


def test_upscaled_background_gets_faces_at_its_resolution(frame):
    image = frame.image
    batch = align_faces(image, faces_of(frame)[:1], SIZE)
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    result = compose(big, batch.crops, batch, ComposeConfig(blend=1.0, color_match=False, upscale=2))
    m = result.mask > 0.5
    assert result.image.shape == big.shape and m.sum() > 4 * 400
    assert psnr(result.image[m], big[m], 255.0) > 30


def test_parsing_model_narrows_the_mask(frame, tmp_path):
    """A stand-in ONNX parsing model (constant logits: 'skin' in a central disc) plugged in by path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = 64
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (xx - size / 2 + 0.5) ** 2 + (yy - size / 2 + 0.5) ** 2 < (size * 0.3) ** 2
    logits = np.zeros((1, 19, size, size), np.float32)
    logits[0, 0] = 1.0  # background everywhere ...
    logits[0, 1][disc] = 2.0  # ... except skin in the disc
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["logits"], value=numpy_helper.from_array(logits, "v"))],
        "parse_stub",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(logits.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "parse_stub.onnx"
    onnx.save(model, str(path))

    image = frame.image
    batch = align_faces(image, faces_of(frame)[:1], SIZE)
    box_only = compose(image, batch.crops, batch, ComposeConfig(blend=1.0, color_match=False))
    parsed = compose(image, batch.crops, batch, ComposeConfig(blend=1.0, color_match=False, parsing_model=str(path)))
    assert 0 < (parsed.mask > 0).sum() < 0.8 * (box_only.mask > 0).sum()
    untouched = parsed.mask == 0
    assert np.array_equal(parsed.image[untouched], image[untouched])
    from gpen_video.errors import ModelError

    with pytest.raises(ModelError, match="not found"):
        compose(image, batch.crops, batch, ComposeConfig(parsing_model=str(tmp_path / "missing.onnx")))
