"""Precision honesty: fp16's pre-normalised modulated convs compute the fp32 function, fp32 on CUDA holds TF32
off (and puts it back), and a batch with inf or NaN in its output fails with a message saying what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import _modconv, random_faces, random_state_dict

from gpen_video.errors import ModelError
from gpen_video.models import load_generator
from gpen_video.models import numerics as nx
from gpen_video.models.gpen import ModulatedConv2d
from gpen_video.models.torch_backend import TorchRestorer


def _prenormalise(restorer: TorchRestorer, value: bool | None) -> TorchRestorer:
    for module in restorer.model.modules():
        if isinstance(module, ModulatedConv2d):
            module.prenormalise = value
    return restorer


def test_prenormalised_network_gives_the_fp32_pixels():
    """The fp16 path's scaling, run in fp32: demodulation cancels it, so the pixels are those of the plain path."""
    sd = random_state_dict(32, 2, 0.25, 2, style_dim=32, seed=71)
    faces = random_faces(2, 32, seed=13)
    plain = TorchRestorer(load_generator(sd)[0]).restore(faces)
    prenormalised = _prenormalise(TorchRestorer(load_generator(sd)[0]), True)
    assert prenormalised.model.generator.convs[0].conv.prenormalise is True
    diff = np.abs(prenormalised.restore(faces).astype(int) - plain.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01
    assert np.abs(plain.astype(int) - faces.astype(int)).mean() > 5  # a live network, not an identity


def _overflowing_layer() -> tuple[ModulatedConv2d, torch.Tensor, torch.Tensor, dict]:
    """A demodulated conv whose styles are in the thousands: ``x · s`` is past fp16's 65504 before the conv."""
    torch.manual_seed(3)
    layer = ModulatedConv2d(32, 8, 3, style_dim=16).eval().requires_grad_(False)
    layer.modulation.bias.fill_(4000.0)
    x = torch.randn(2, 32, 8, 8) * 30
    style = torch.randn(2, 16)
    sd = {f"l.{k}": v for k, v in layer.state_dict().items()}
    return layer, x, style, sd


def test_fp16_prenormalisation_keeps_a_demodulated_conv_finite():
    layer, x, style, sd = _overflowing_layer()
    want = _modconv(x, style, sd, "l")  # the official per-sample grouped conv, fp32
    assert want.abs().max() < 1000  # demodulated: the true output is small
    half = layer.half()
    half.modulation.float()  # the restorer keeps the linears fp32
    with torch.inference_mode():
        half.prenormalise = False
        assert not torch.isfinite(half(x.half(), style)).all()
        half.prenormalise = None  # the default: on in fp16
        got = half(x.half(), style).float()
    assert torch.isfinite(got).all()
    assert torch.allclose(got, want, rtol=0.01, atol=0.05 * want.abs().mean().item())


def test_non_finite_output_fails_with_what_to_do():
    sd = random_state_dict(16, 2, 0.25, 1, style_dim=16, seed=72)
    # finite (the loader refuses NaN), but the skip's sum overflows fp32
    sd["generator.to_rgb1.bias"][0, 1] = sd["generator.to_rgbs.0.bias"][0, 1] = 3e38
    restorer = TorchRestorer(load_generator(sd)[0])
    faces = random_faces(2, 16, seed=14)
    with pytest.raises(ModelError, match=r"GPEN-16 in fp32 gave inf/NaN for a batch of 2 faces; .*model file"):
        restorer.restore(faces)
    with pytest.raises(ModelError, match="inf/NaN"):
        restorer.restore_on_device(torch.from_numpy(faces))
    with pytest.raises(ModelError, match=r"in fp16 gave inf/NaN .*--precision bf16"):
        nx.check_finite(torch.tensor([[1.0, float("inf")]]), "GPEN-2048", "fp16")
    nx.check_finite(torch.ones(2, 3), "GPEN-2048", "fp16")  # finite: nothing raised


@pytest.fixture
def tf32_settings():
    """The process's TF32 settings, put back after the test whatever it did."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in nx._switches()]
    yield
    for owner, name, value in saved:
        setattr(owner, name, value)


def test_exact_fp32_is_held_while_any_restorer_needs_it(tf32_settings):
    for owner, name, exact in nx._switches():
        setattr(owner, name, "tf32" if isinstance(exact, str) else True)  # PyTorch's cuDNN default: TF32 allowed
    assert nx.tf32_allowed()
    nx.hold_exact_fp32()
    nx.hold_exact_fp32()
    assert not nx.tf32_allowed()
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    nx.release_exact_fp32()
    assert not nx.tf32_allowed(), "one holder is still open"
    nx.release_exact_fp32()
    assert nx.tf32_allowed() and torch.backends.cudnn.conv.fp32_precision == "tf32"
    nx.release_exact_fp32()  # an extra release changes nothing
    assert nx.tf32_allowed()


def test_cpu_fp32_label_promises_nothing_about_tf32():
    sd = random_state_dict(16, 2, 0.25, 1, style_dim=16, seed=73)
    restorer = TorchRestorer(load_generator(sd)[0])
    assert restorer.precision_label == "fp32" and not restorer.exact_fp32
    assert restorer.name == "gpen-16 torch cpu fp32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp32_runs_without_tf32_and_says_so(tf32_settings):
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=32, seed=74)
    torch.backends.cudnn.allow_tf32 = True
    restorer = TorchRestorer(load_generator(sd)[0], device="cuda", precision="fp32")
    assert restorer.precision_label == "fp32 (TF32 off)" and restorer.name.endswith("cuda fp32 (TF32 off)")
    assert not nx.tf32_allowed()
    bf16 = TorchRestorer(load_generator(sd)[0], device="cuda", precision="bf16")
    assert bf16.precision_label == "bf16"
    restorer.restore(random_faces(2, 64, seed=15))
    restorer.close()
    assert nx.tf32_allowed(), "closing the last fp32 restorer puts PyTorch's setting back"
