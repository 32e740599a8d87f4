"""Background upscale: RRDBNet parity with the official architecture, checkpoint handling, tiling, Lanczos, geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpen_video.align.compose import AlignedBatch, compose
from gpen_video.align.warp import warp_cpu
from gpen_video.config import ComposeConfig
from gpen_video.errors import ConfigError, ModelError
from gpen_video.models.rrdbnet import RRDBConfig, infer_config, load_rrdbnet, model_from_state_dict
from gpen_video.models.upscale import LanczosUpscaler, RRDBUpscaler, make_upscaler, plan_tiles, scale_affine
from tests.reference.rrdbnet_reference import official_key_names, random_official_state_dict, rrdbnet_forward


class Payload:
    """Stands for any pickled object a checkpoint should not carry."""


@pytest.mark.parametrize("scale", [2, 4])
def test_rrdbnet_matches_reference_on_random_official_checkpoint(scale):
    state = random_official_state_dict(scale, num_feat=16, num_block=2, num_grow_ch=8, seed=scale)
    model = model_from_state_dict(state)
    assert model.config == RRDBConfig(scale=scale, features=16, blocks=2, grow=8)
    x = torch.rand(1, 3, 14, 18, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x)
        ref = rrdbnet_forward(state, x, scale, num_block=2)
    assert ours.shape == (1, 3, 14 * scale, 18 * scale)
    assert float(ref.abs().max()) > 0.05  # the comparison is not between two zero tensors
    assert float((ours - ref).abs().max()) <= 1e-5


def test_rrdbnet_state_dict_keys_are_the_official_ones():
    model = RRDBConfig(scale=2, features=16, blocks=3, grow=8).build()
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == official_key_names(2, 16, 3, 8)


def test_checkpoint_wrappers_prefer_params_ema(tmp_path):
    ema = random_official_state_dict(4, 8, 1, 4, seed=1)
    plain = random_official_state_dict(4, 8, 1, 4, seed=2)
    path = tmp_path / "RealESRGAN_x4plus.pth"
    torch.save({"params": plain, "params_ema": ema}, path)
    model = load_rrdbnet(path)
    assert torch.equal(model.conv_first.weight, ema["conv_first.weight"])
    path2 = tmp_path / "realesrnet_x2.pth"
    torch.save({"params": {f"module.{k}": v for k, v in random_official_state_dict(2, 8, 1, 4).items()}}, path2)
    assert load_rrdbnet(path2).scale == 2


def test_unsafe_or_foreign_checkpoints_are_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"params_ema": random_official_state_dict(4, 8, 1, 4), "x": Payload()}, evil)
    with pytest.raises(ModelError, match="could run code"):
        load_rrdbnet(evil)
    foreign = tmp_path / "gpen.pth"
    torch.save({"generator.conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(ModelError, match="not an RRDBNet"):
        load_rrdbnet(foreign)
    state = random_official_state_dict(4, 8, 1, 4)
    state["conv_hr.weight"] = torch.zeros(8, 8, 1, 1)
    with pytest.raises(ModelError, match="does not match"):
        model_from_state_dict(state)


def test_infer_config_reads_full_size_shapes():
    state = {k: torch.empty(s, device="meta") for k, s in official_key_names(2, 64, 23, 32)}
    assert infer_config(state) == RRDBConfig(scale=2, features=64, blocks=23, grow=32)


@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_inference_equals_whole_frame_when_overlap_covers_receptive_field(scale):
    model = model_from_state_dict(random_official_state_dict(scale, 8, 1, 4, seed=3))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)  # odd sides: the x2 edge pad is exercised
    whole = RRDBUpscaler(model, tile=0).upscale(image)
    tiled_up = RRDBUpscaler(model, tile=16, overlap=24)
    tiled = tiled_up.upscale(image)
    assert whole.shape == tiled.shape == (37 * scale, 53 * scale, 3)
    assert int(np.abs(whole.astype(int) - tiled.astype(int)).max()) <= 1  # fp32 sums in another order
    # memory: the network never saw more than one padded tile
    assert max(tiled_up.largest_input) <= 16 + 2 * 24 + 2


def test_tiles_cover_every_pixel_once_and_stay_on_the_unshuffle_grid():
    tiles = plan_tiles(2160, 3840, tile=256, overlap=15, multiple=2)
    covered = np.zeros((2160, 3840), np.uint8)
    for t in tiles:
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert t.py0 % 2 == 0 and t.px0 % 2 == 0
        assert t.py1 - t.py0 <= 256 + 2 * 16 and t.px1 - t.px0 <= 256 + 2 * 16
    assert (covered == 1).all()


def test_rrdb_upscaler_keeps_16_bit():
    model = model_from_state_dict(random_official_state_dict(2, 8, 1, 4))
    image = np.full((8, 10, 3), 40000, np.uint16)
    out = RRDBUpscaler(model, tile=0).upscale(image)
    assert out.dtype == np.uint16 and out.shape == (16, 20, 3)
    assert len(np.unique(out)) > 255 or out.max() > 255  # not squeezed through 8 bits


@pytest.mark.parametrize("scale", [2, 4])
def test_lanczos_size_and_flat_field(scale):
    image = np.full((9, 13, 3), (10, 200, 30), np.uint8)
    out = LanczosUpscaler(scale).upscale(image)
    assert out.shape == (9 * scale, 13 * scale, 3) and out.dtype == np.uint8
    assert (out == np.array((10, 200, 30), np.uint8)).all()
    assert LanczosUpscaler(scale).upscale(image.astype(np.uint16) * 257).dtype == np.uint16


def test_make_upscaler_checks_names_and_scales():
    assert isinstance(make_upscaler("lanczos", 4), LanczosUpscaler)
    with pytest.raises(ConfigError):
        make_upscaler("lanczos", 3)
    with pytest.raises(ConfigError, match="does not match"):
        make_upscaler("realesrgan-x4", 2, model_path="x.pth")
    with pytest.raises(ConfigError, match="needs its model file"):
        make_upscaler("realesrgan-x2", 2)


def _smooth_image(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 60 * np.sin(xx / 9.0 + c) * np.cos(yy / 11.0) for c in range(3)], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_scale_affine_cuts_the_same_crop_from_the_upscaled_frame():
    frame = _smooth_image(120, 160)
    theta = 0.2
    a = np.array([[np.cos(theta), -np.sin(theta), -20.0], [np.sin(theta), np.cos(theta), -30.0]]) * 1.5
    crop = warp_cpu(frame, a, 64).astype(float)
    for k in (2, 4):
        up = LanczosUpscaler(k).upscale(frame)
        crop_up = warp_cpu(up, scale_affine(a, k), 64).astype(float)
        assert np.abs(crop_up - crop).mean() < 1.0  # same places; only Lanczos vs bilinear sampling differs
        wrong = warp_cpu(up, a, 64).astype(float)  # unscaled transform: a different piece of the picture
        assert np.abs(wrong - crop).mean() > 5.0


def _power_at(profile: np.ndarray, period: float) -> float:
    x = np.arange(len(profile))
    p = profile - profile.mean()
    return float(np.abs((p * np.exp(-2j * np.pi * x / period)).sum())) / len(profile)


def test_x2_output_pastes_faces_at_the_higher_resolution():
    """Detail finer than the 1x frame can hold survives in the x2 output only when pasted at x2."""
    frame = np.full((96, 128, 3), 128, np.uint8)
    size = 128
    a = np.array([[2.0, 0.0, -40.0], [0.0, 2.0, -20.0]])  # face of 64 frame px -> 128 px crop
    stripes = 128 + 60 * np.sin(2 * np.pi * np.arange(size) / 3.0)  # 3 crop px per cycle = 1.5 px in the 1x frame
    restored = np.repeat(np.repeat(stripes[None, None, :, None], size, 1), 3, 3).round().astype(np.uint8)
    crops = warp_cpu(frame, a, size)[None]
    cfg = ComposeConfig(color_match=False, blend=1.0)
    up = LanczosUpscaler(2).upscale(frame)
    pasted_hi = compose(up, restored, AlignedBatch(crops, a[None], frame_shape=(96, 128)), cfg).image
    assert pasted_hi.shape == (192, 256, 3)
    pasted_lo = LanczosUpscaler(2).upscale(compose(frame, restored, AlignedBatch(crops, a[None]), cfg).image)
    assert pasted_lo.shape == pasted_hi.shape
    rows, cols = slice(60, 100), slice(70, 140)  # inside the face, where the mask is 1
    hi = _power_at(pasted_hi[rows, cols, 1].astype(float).mean(0), 3.0)
    lo = _power_at(pasted_lo[rows, cols, 1].astype(float).mean(0), 3.0)
    assert hi > 10.0  # 30 = amplitude/2 ideally; bilinear halfway between crop pixels halves it (cos 60°)
    assert hi > 5 * lo, (hi, lo)
