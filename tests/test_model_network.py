"""The GPEN network: official key names/shapes, and outputs equal to an independent grouped-conv reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import random_faces, random_state_dict, reference_restore, save_checkpoint, upfirdn2d_native

from gpen_video.models import FullGenerator, load_generator, load_restorer
from gpen_video.models.gpen import NoiseInjection, make_kernel, upfirdn2d
from gpen_video.models.torch_backend import TorchRestorer, postprocess, preprocess

# ------------------------------------------------------------------------------- structure (spec 1.5)


def _meta_state(size: int, cm: float, narrow: float) -> tuple[dict, int, int]:
    with torch.device("meta"):
        model = FullGenerator(size, 512, 8, channel_multiplier=cm, narrow=narrow)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    return model.state_dict(), params, buffers


@pytest.mark.parametrize(
    ("size", "cm", "narrow", "entries", "params"),
    [
        (2048, 2, 1, 201, 71_294_769),
        (1024, 2, 1, 182, 71_210_540),
        (512, 2, 1, 163, 71_005_223),
        (256, 1, 0.5, 144, 18_879_010),
    ],
)
def test_released_configs_have_the_spec_key_counts(size, cm, narrow, entries, params):
    sd, n_params, n_buffer_values = _meta_state(size, cm, narrow)
    assert len(sd) == entries
    assert n_params == params
    assert sum(k.endswith(".kernel") for k in sd) * 16 == n_buffer_values


def test_2048_keys_and_shapes_match_spec_appendix_a():
    sd, _, buffers = _meta_state(2048, 2, 1)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert buffers == 432
    assert next(iter(sd)) == "generator.style.1.weight" and list(sd)[-1] == "final_linear.0.bias"
    for i in range(1, 9):
        assert shapes[f"generator.style.{i}.weight"] == (512, 512)
    assert shapes["generator.input.input"] == (1, 512, 4, 4)
    assert shapes["generator.conv1.conv.weight"] == (1, 512, 512, 3, 3)
    assert shapes["generator.conv1.activate.bias"] == (1024,)
    assert shapes["generator.conv1.noise.weight"] == (1,)
    assert shapes["generator.to_rgb1.conv.weight"] == (1, 3, 1024, 1, 1)
    assert shapes["generator.to_rgb1.conv.modulation.weight"] == (1024, 512)
    conv_out = [512] * 8 + [256, 256, 128, 128, 64, 64, 32, 32, 16, 16]
    conv_in = [1024] * 9 + [512, 512, 256, 256, 128, 128, 64, 64, 32]
    for n in range(18):
        assert shapes[f"generator.convs.{n}.conv.weight"] == (1, conv_out[n], conv_in[n], 3, 3)
        assert shapes[f"generator.convs.{n}.conv.modulation.weight"] == (conv_in[n], 512)
        assert shapes[f"generator.convs.{n}.activate.bias"] == (2 * conv_out[n],)
        assert (f"generator.convs.{n}.conv.blur.kernel" in shapes) == (n % 2 == 0)
    rgb_in = [1024] * 4 + [512, 256, 128, 64, 32]
    for m in range(9):
        assert shapes[f"generator.to_rgbs.{m}.conv.weight"] == (1, 3, rgb_in[m], 1, 1)
        assert shapes[f"generator.to_rgbs.{m}.upsample.kernel"] == (4, 4)
        assert shapes[f"generator.to_rgbs.{m}.bias"] == (1, 3, 1, 1)
    assert shapes["ecd0.0.0.weight"] == (16, 3, 1, 1) and shapes["ecd0.0.1.bias"] == (16,)
    ecd_out = [16, 32, 64, 128, 256, 512, 512, 512, 512, 512]
    for i in range(1, 10):
        assert shapes[f"ecd{i}.0.0.kernel"] == (4, 4)
        assert shapes[f"ecd{i}.0.1.weight"] == (ecd_out[i], ecd_out[i - 1], 3, 3)
        assert shapes[f"ecd{i}.0.2.bias"] == (ecd_out[i],)
    assert "ecd10.0.1.weight" not in shapes
    assert shapes["final_linear.0.weight"] == (512, 8192)


def test_blur_kernels_are_the_official_constants():
    model = FullGenerator(64, 32, 1, narrow=0.0625)
    k = torch.tensor([[1, 3, 3, 1], [3, 9, 9, 3], [3, 9, 9, 3], [1, 3, 3, 1]], dtype=torch.float32) / 64
    sd = model.state_dict()
    assert torch.allclose(sd["ecd1.0.0.kernel"], k)
    assert torch.allclose(sd["generator.convs.0.conv.blur.kernel"], k * 4)
    assert torch.allclose(sd["generator.to_rgbs.0.upsample.kernel"], k * 4)


@pytest.mark.parametrize(("up", "down", "pad"), [(1, 1, (1, 1)), (1, 2, (2, 2)), (2, 1, (2, 1)), (2, 1, (3, 3))])
def test_upfirdn2d_matches_native(up, down, pad):
    x = torch.randn(2, 5, 9, 9, dtype=torch.float64)
    k = make_kernel([1, 3, 3, 1]).double() * (4 if up > 1 else 1)
    k = k + torch.arange(16, dtype=torch.float64).view(4, 4) * 0.01  # asymmetric: catches a missing flip
    got = upfirdn2d(x, k, up=up, down=down, pad=pad)
    want = upfirdn2d_native(x, k, up=up, down=down, pad=pad)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-12)


def test_noise_is_never_random():
    with pytest.raises(ValueError, match="encoder features"):
        NoiseInjection()(torch.zeros(1, 2, 4, 4), None)


# ------------------------------------------------------------------------ numerics vs the reference

CONFIGS = [
    # size, channel_multiplier, narrow, n_mlp, style_dim (512/8 as released; smaller ones keep the tests fast)
    (64, 2, 0.25, 8, 512),
    (64, 1, 0.125, 2, 64),
    (128, 2, 0.0625, 4, 64),
    (128, 1, 0.25, 1, 32),
    (256, 1, 0.0625, 2, 64),
]


@pytest.mark.parametrize(("size", "cm", "narrow", "n_mlp", "style_dim"), CONFIGS)
def test_restorer_matches_grouped_conv_reference(tmp_path, size, cm, narrow, n_mlp, style_dim):
    sd = random_state_dict(size, cm, narrow, n_mlp, seed=size + n_mlp, style_dim=style_dim)
    path = save_checkpoint(sd, tmp_path / f"GPEN-BFR-test-{size}.pth")
    restorer = load_restorer(str(path))
    assert restorer.size == size
    faces = random_faces(3, size, seed=1)
    got = restorer.restore(faces)
    want = reference_restore(sd, faces)
    assert got.shape == faces.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1
    assert len(np.unique(want)) > 100  # a live network, not a constant or saturated image
    assert np.abs(want.astype(int) - faces.astype(int)).mean() > 5  # and not an identity


def test_float_output_matches_reference_closely():
    from model_helpers import reference_forward

    sd = random_state_dict(64, 2, 0.25, 8, seed=7)
    model, _ = load_generator(sd)
    sd = {k: v.double() for k, v in sd.items()}
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        got = model(x).double()
    want = reference_forward(sd, x, torch.float64)
    assert torch.allclose(got, want, atol=2e-5, rtol=0)
    assert want.std() > 0.1


def test_batched_equals_one_at_a_time():
    sd = random_state_dict(128, 1, 0.125, 2, seed=3, style_dim=64)
    restorer = TorchRestorer(load_generator(sd)[0])
    faces = random_faces(5, 128, seed=2)
    batched = restorer.restore(faces)
    single = np.concatenate([restorer.restore(faces[i : i + 1]) for i in range(5)])
    assert np.abs(batched.astype(int) - single.astype(int)).max() <= 1
    # and the faces are really different from one another
    assert np.abs(batched[0].astype(int) - batched[1].astype(int)).mean() > 1


def test_deterministic():
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=64, seed=4)
    restorer = TorchRestorer(load_generator(sd)[0])
    faces = random_faces(2, 64, seed=5)
    assert np.array_equal(restorer.restore(faces), restorer.restore(faces))


@pytest.mark.parametrize(("precision", "max_level", "mean_level"), [("bf16", 8, 1.5), ("fp16", 3, 0.5)])
def test_low_precision_close_to_fp32(precision, max_level, mean_level):
    sd = random_state_dict(64, 2, 0.125, 8, seed=8, style_dim=128)
    faces = random_faces(2, 64, seed=6)
    ref = TorchRestorer(load_generator(sd)[0]).restore(faces).astype(int)
    low = TorchRestorer(load_generator(sd)[0], precision=precision)
    assert low.model.generator.convs[0].conv.weight.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert low.model.final_linear[0].weight.dtype == torch.float32  # linears stay fp32
    diff = np.abs(low.restore(faces).astype(int) - ref)
    assert diff.max() <= max_level and diff.mean() <= mean_level


def test_channels_last_same_result():
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=64, seed=9)
    faces = random_faces(2, 64, seed=7)
    ref = TorchRestorer(load_generator(sd)[0], channels_last=False).restore(faces)
    cl = TorchRestorer(load_generator(sd)[0], channels_last=True)
    assert cl.model.ecd1[0][1].weight.is_contiguous(memory_format=torch.channels_last)
    assert np.abs(cl.restore(faces).astype(int) - ref.astype(int)).max() <= 1


def test_restore_tensor_keeps_device_and_matches_uint8_path():
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=64, seed=10)
    restorer = TorchRestorer(load_generator(sd)[0])
    faces = random_faces(2, 64, seed=8)
    x = preprocess(torch.from_numpy(faces))
    y = restorer.restore_tensor(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert np.array_equal(postprocess(y).numpy(), restorer.restore(faces))
    with pytest.raises(ValueError):
        restorer.restore_tensor(torch.zeros(1, 3, 32, 32))


def test_official_pre_and_post_processing():
    faces = np.zeros((1, 2, 2, 3), np.uint8)
    faces[0, 0, 0] = (255, 0, 0)  # pure blue in BGR
    x = preprocess(torch.from_numpy(faces))
    assert x.shape == (1, 3, 2, 2)
    assert x[0, :, 0, 0].tolist() == [-1.0, -1.0, 1.0]  # RGB order, [-1, 1]
    # truncation, not rounding: 0.999 level -> 0; values outside [-1, 1] are clipped
    y = torch.tensor([-1 + 2 * 0.999 / 255, 2.0, -3.0]).view(1, 3, 1, 1)
    out = postprocess(y)
    assert out.shape == (1, 1, 1, 3)
    assert out[0, 0, 0].tolist() == [0, 255, 0]  # BGR: B <- -3 (clipped 0), G <- 2 (255), R <- 0.999 -> 0


def test_wrong_input_shape_rejected():
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=64, seed=11)
    restorer = TorchRestorer(load_generator(sd)[0])
    with pytest.raises(ValueError, match="64"):
        restorer.restore(np.zeros((1, 128, 128, 3), np.uint8))
    assert restorer.restore(np.zeros((0, 64, 64, 3), np.uint8)).shape == (0, 64, 64, 3)


def test_traceable_path_equals_fast_inference_path():
    """With gradients on (and when tracing for ONNX) the network takes the out-of-place path: same numbers."""
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=64, seed=12)
    model, _ = load_generator(sd)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        fast = model(x)
    with torch.enable_grad():
        slow = model(x.clone().requires_grad_(True))
    assert slow.requires_grad
    assert torch.allclose(fast, slow.detach(), atol=1e-6)


def test_modules_keep_official_semantics():
    """StyledConv/ModulatedConv2d/ConvLayer forward() keep the official meaning (gain folding is internal)."""
    from model_helpers import _modconv, _styled

    sd = random_state_dict(64, 2, 0.125, 2, style_dim=64, seed=13)
    model, _ = load_generator(sd)
    layer = model.generator.convs[1]
    x = torch.randn(2, layer.conv.in_channel, 8, 8)
    style = torch.randn(2, 64)
    noise = torch.randn(2, layer.conv.out_channel, 8, 8)
    with torch.no_grad():
        assert torch.allclose(layer(x, style, noise), _styled(x, style, noise, sd, "generator.convs.1"), atol=1e-5)
        assert torch.allclose(layer.conv(x, style), _modconv(x, style, sd, "generator.convs.1.conv"), atol=1e-5)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("precision", "max_level"), [("fp32", 1), ("bf16", 8), ("fp16", 3)])
def test_cuda_matches_reference(precision, max_level):
    """GPU twin of test_restorer_matches_grouped_conv_reference / test_low_precision_close_to_fp32."""
    sd = random_state_dict(128, 2, 0.125, 8, seed=14, style_dim=128)
    faces = random_faces(4, 128, seed=11)
    restorer = TorchRestorer(load_generator(sd)[0], device="cuda", precision=precision)
    assert restorer.channels_last
    got = restorer.restore(faces)
    diff = np.abs(got.astype(int) - reference_restore(sd, faces).astype(int))
    assert diff.max() <= max_level
    x = preprocess(torch.from_numpy(faces)).cuda()
    y = restorer.restore_tensor(x)
    assert y.is_cuda and y.shape == x.shape


@pytest.mark.gpu
@needs_cuda
def test_cuda_compiled_matches_eager():
    """GPU twin of test_traceable_path_equals_fast_inference_path, through torch.compile."""
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=64, seed=15)
    faces = random_faces(2, 64, seed=12)
    eager = TorchRestorer(load_generator(sd)[0], device="cuda", precision="fp32").restore(faces)
    restorer = TorchRestorer(load_generator(sd)[0], device="cuda", precision="fp32", compile=True, run_batch=2)
    assert restorer.compiled.compiles == 2 and restorer.name.endswith("compiled"), "warmed: buckets 2 and 1"
    compiled = restorer.restore(faces)
    assert np.abs(eager.astype(int) - compiled.astype(int)).max() <= 1
    restorer.restore(faces[:1])
    assert restorer.compiled.compiles == 2, "no compile after the warm-up"


def test_compiles_as_one_graph():
    """CPU twin of the CUDA compile test: dynamo traces the whole network without graph breaks
    (what CUDA graphs need), and the traced path gives the eager numbers. The eager backend keeps it fast."""
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=32, seed=16)
    model, _ = load_generator(sd)
    compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=False)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        assert torch.allclose(compiled(x), model(x), atol=1e-6)
