"""``compose_torch`` (the device twin of ``compose``) against the CPU reference: same pixels within a level or two.

The twin runs here on CPU tensors; the ``gpu`` test repeats the real-face comparison on CUDA where present.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from faces_helpers import mtcnn

from gpen_video.align import AlignedBatch, align_faces, compose
from gpen_video.align.compose import shrink_factor
from gpen_video.align.masks import feather_mask
from gpen_video.align.torch_compose import compose_torch, match_colour_torch
from gpen_video.config import ComposeConfig, FacesConfig
from gpen_video.faces import FaceStage
from gpen_video.faces.types import TrackedFace
from gpen_video.synthetic import FaceScene, render

SIZE = 256


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, list[TrackedFace]]:
    """A 640×360 frame of the six real faces, and the faces the face stage finds in it."""
    frame = render(FaceScene(width=640, height=360), 0)
    stage = FaceStage(FacesConfig(min_face=10, min_track_length=1, smooth=False), detector=mtcnn())
    found = (stage.push(0, frame.image) + stage.flush())[0].faces
    assert len(found) == 6
    return frame.image, found


def at_depth(image: np.ndarray, depth: int) -> np.ndarray:
    return image if depth == 8 else image.astype(np.uint16) * 257 + 77


def fake_restore(crops: np.ndarray) -> np.ndarray:
    """A deterministic 'restorer': 8-bit, blurred and tinted, so blending and colour matching both matter."""
    crops8 = crops if crops.dtype == np.uint8 else np.clip(np.rint(crops / 257.0), 0, 255).astype(np.uint8)
    blurred = np.stack([cv2.GaussianBlur(c, (0, 0), 1.5) for c in crops8]).astype(np.int32)
    return np.clip(blurred + np.array([12, -6, 25]), 0, 255).astype(np.uint8)


def both(image: np.ndarray, faces: list[TrackedFace], config: ComposeConfig, device: str = "cpu", size: int = SIZE):
    """(CPU result, twin's image, twin's mask) for ``faces`` restored by ``fake_restore``."""
    batch = align_faces(image, faces, size)
    restored = fake_restore(batch.crops)
    ref = compose(image, restored, batch, config)
    out, mask, box = compose_torch(
        torch.from_numpy(image).to(device),
        torch.from_numpy(restored).to(device),
        batch.affines,
        config,
        crops=torch.from_numpy(batch.crops).to(device),
    )
    assert out.device.type == mask.device.type == torch.device(device).type
    assert box is not None  # the box it names holds every pasted pixel (the splice looks nowhere else)
    outside = torch.ones(mask.shape, dtype=torch.bool, device=mask.device)
    outside[box[1] : box[3], box[0] : box[2]] = False
    assert not mask[outside].any() and mask[~outside].any()
    return ref, out.cpu().numpy(), mask.cpu().numpy()


def assert_twins(image: np.ndarray, ref, out: np.ndarray, mask: np.ndarray, pasted: int) -> None:
    top_level = 1 if image.dtype == np.uint8 else 257
    assert out.shape == image.shape and out.dtype == image.dtype and mask.dtype == np.float32
    assert (ref.mask > 0.5).sum() > pasted  # the faces really were pasted ...
    assert np.any(ref.image != image, axis=-1).sum() > pasted  # ... and the restored faces differ
    diff = np.abs(out.astype(np.int64) - ref.image.astype(np.int64))
    assert diff.max() <= 2 * top_level
    assert np.abs(mask - ref.mask).max() <= 1e-3
    untouched = mask == 0
    assert 0.5 < untouched.mean() < 1.0
    assert np.array_equal(out[untouched], image[untouched])  # bit-exact, not a float round trip
    assert np.all(mask[np.any(out != image, axis=-1)] > 0)


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("color_match", [False, True])
def test_twin_matches_cpu_compose_on_real_faces(scene, depth, color_match):
    image = at_depth(scene[0], depth)
    ref, out, mask = both(image, scene[1], ComposeConfig(blend=0.8, color_match=color_match))
    assert_twins(image, ref, out, mask, pasted=6 * 150)


@pytest.mark.parametrize("color_match", [False, True])
def test_twin_shrinks_crops_far_bigger_than_their_faces_as_the_cpu_does(scene, color_match):
    """1024-px crops of faces whose crops cover ~100 frame px: both paths shrink them 8 times by block means first."""
    batch = align_faces(scene[0], scene[1], 1024)
    assert shrink_factor(batch.affines, 1024) == 8
    ref, out, mask = both(scene[0], scene[1], ComposeConfig(blend=0.8, color_match=color_match), size=1024)
    assert_twins(scene[0], ref, out, mask, pasted=6 * 150)


def test_int32_frame_is_taken_as_16_bit(scene):
    image = at_depth(scene[0], 16)
    batch = align_faces(image, scene[1][:2], SIZE)
    restored = torch.from_numpy(fake_restore(batch.crops))
    config = ComposeConfig(color_match=True)
    crops = torch.from_numpy(batch.crops)
    out16, mask16, _ = compose_torch(torch.from_numpy(image), restored, batch.affines, config, crops=crops)
    out32, mask32, _ = compose_torch(
        torch.from_numpy(image.astype(np.int32)), restored, batch.affines, config, crops=crops
    )
    assert out32.dtype == torch.int32 and torch.equal(out32, out16.to(torch.int32)) and torch.equal(mask32, mask16)


def test_overlapping_and_frame_edge_faces_match_cpu(scene):
    """A face duplicated with a small shift (two masks on the same pixels), one cut by the frame's edge, one off it."""
    image, faces = scene
    shift = np.array((6.0, 3.0), np.float32)
    edge = faces[0].landmarks5 - faces[0].landmarks5.mean(0) + np.array((4.0, 180.0), np.float32)
    extra = [
        TrackedFace(90, faces[2].landmarks5 + shift, faces[2].box, 1.0),
        TrackedFace(91, edge.astype(np.float32), faces[0].box, 1.0),
        TrackedFace(92, faces[1].landmarks5 + np.float32(5000.0), faces[1].box, 1.0),  # wholly off the frame
    ]
    config = ComposeConfig(blend=1.0, color_match=True)
    ref, out, mask = both(image, [*faces, *extra], config)
    assert_twins(image, ref, out, mask, pasted=7 * 150)
    alone = [both(image, [f], ComposeConfig(blend=1.0, color_match=False))[0].mask for f in (faces[2], extra[0])]
    assert ((alone[0] > 0.5) & (alone[1] > 0.5)).sum() > 200  # the two masks really overlap
    assert mask[:, 0].max() > 0.5  # and a face was pasted up to the frame's edge


def test_parsing_model_masks_match_cpu(scene, tmp_path):
    """A stand-in ONNX parsing model (constant logits: 'skin' in a central disc) narrows both paths' masks alike."""
    from onnx import TensorProto, helper, numpy_helper, save

    side = 64
    yy, xx = np.mgrid[0:side, 0:side]
    logits = np.zeros((1, 19, side, side), np.float32)
    logits[0, 0] = 1.0  # background everywhere but skin in the disc
    logits[0, 1][(xx - side / 2 + 0.5) ** 2 + (yy - side / 2 + 0.5) ** 2 < (side * 0.3) ** 2] = 2.0
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["logits"], value=numpy_helper.from_array(logits, "v"))],
        "parse_stub",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(logits.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save(model, str(tmp_path / "parse_stub.onnx"))
    image = scene[0]
    parsed = ComposeConfig(blend=1.0, color_match=False, parsing_model=str(tmp_path / "parse_stub.onnx"))
    ref, out, mask = both(image, scene[1][:2], parsed)
    box_only, _, _ = both(image, scene[1][:2], ComposeConfig(blend=1.0, color_match=False))
    assert 0 < (ref.mask > 0).sum() < 0.8 * (box_only.mask > 0).sum()  # the parsing mask really narrowed it
    assert_twins(image, ref, out, mask, pasted=100)


def test_warp_conventions_match_warp_affine_on_noise():
    """Noise crops and a noise frame, rotated, scaled up and down at sub-pixel offsets, with uneven masks.

    Any half-pixel or border-convention mismatch with ``cv2.warpAffine`` shows as large differences here.
    """
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    size = 128
    restored = rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8)

    def similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        return np.array([[c, -s, tx], [s, c, ty]])

    affines = np.stack(
        [similarity(2.7, 0.3, -150.37, 10.61), similarity(0.45, -0.2, 20.3, -30.77), similarity(1, 0, 30.5, -60.25)]
    )
    batch = AlignedBatch(crops=np.zeros((3, size, size, 3), np.uint8), affines=affines, frame_shape=(200, 300))
    masks = np.clip(rng.random((3, size, size)).astype(np.float32) * 1.5 - 0.2, 0.0, 1.0)  # non-zero at the edge
    config = ComposeConfig(blend=1.0, color_match=False)
    for crop_masks in (None, masks):
        ref = compose(image, restored, batch, config, masks=crop_masks)
        out, mask, _ = compose_torch(
            torch.from_numpy(image),
            torch.from_numpy(restored),
            torch.from_numpy(affines),
            config,
            masks=None if crop_masks is None else torch.from_numpy(crop_masks),
        )
        out, mask = out.numpy(), mask.numpy()
        assert (ref.mask > 0).sum() > 10000
        assert np.abs(out.astype(int) - ref.image).max() <= 2
        assert np.abs(mask - ref.mask).max() <= 1e-3
        assert np.array_equal(out[mask == 0], image[mask == 0])


def test_twin_colour_match_gives_the_source_mean_and_spread_in_opencvs_ycrcb(scene):
    """OpenCV's BT.601 YCrCb is the reference: after the match a face's mean and spread there are its source's."""
    batch = align_faces(scene[0], scene[1][:3], SIZE)
    restored = fake_restore(batch.crops).astype(np.float32) * np.float32(0.85)  # tinted, blurred and darker
    masks = np.broadcast_to(feather_mask(SIZE, 0.04, 0.08), (3, SIZE, SIZE))
    matched = match_colour_torch(
        torch.from_numpy(restored), torch.from_numpy(batch.crops), torch.from_numpy(np.ascontiguousarray(masks)), 255.0
    ).numpy()
    inside = masks[0] > 0.5
    for face, source in zip(matched, batch.crops, strict=True):
        ours = cv2.cvtColor(face / np.float32(255), cv2.COLOR_BGR2YCrCb)[inside]
        theirs = cv2.cvtColor(source.astype(np.float32) / 255, cv2.COLOR_BGR2YCrCb)[inside]
        before = cv2.cvtColor(
            fake_restore(source[None])[0].astype(np.float32) * np.float32(0.85 / 255), cv2.COLOR_BGR2YCrCb
        )
        assert np.abs(before[inside].mean(0) - theirs.mean(0)).max() > 0.04  # there was a shift to undo
        assert np.abs(ours.mean(0) - theirs.mean(0)).max() < 2e-3  # means (subsampled statistics: not exact)
        assert np.allclose(ours.std(0), theirs.std(0), rtol=0.05)  # spreads, where within the gain's limits


def test_no_faces_or_faces_off_frame_leave_the_frame_alone(scene):
    image = torch.from_numpy(scene[0])
    out, mask, _ = compose_torch(
        image, torch.zeros((0, 64, 64, 3), dtype=torch.uint8), np.zeros((0, 2, 3)), ComposeConfig()
    )
    assert torch.equal(out, image) and out.data_ptr() != image.data_ptr() and not mask.any()
    far = np.array([[[1.0, 0.0, 5000.0], [0.0, 1.0, 5000.0]]])  # the crop maps far outside the frame
    restored = torch.full((1, 64, 64, 3), 255, dtype=torch.uint8)
    out, mask, _ = compose_torch(image, restored, far, ComposeConfig(color_match=False))
    assert torch.equal(out, image) and not mask.any()
    with pytest.raises(ValueError, match="crops"):
        compose_torch(image, restored, np.array([[[1.0, 0.0, -10.0], [0.0, 1.0, -10.0]]]), ComposeConfig())


@pytest.mark.gpu
@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("color_match", [False, True])
def test_twin_matches_cpu_compose_on_cuda(scene, depth, color_match):
    image = at_depth(scene[0], depth)
    ref, out, mask = both(image, scene[1], ComposeConfig(blend=0.8, color_match=color_match), device="cuda")
    assert_twins(image, ref, out, mask, pasted=6 * 150)
