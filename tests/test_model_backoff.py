"""Out-of-memory back-off: a too-large batch costs speed, never frames (simulated on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import random_faces, random_state_dict

from gpen_video.errors import ModelError
from gpen_video.models import load_generator
from gpen_video.models.torch_backend import TorchRestorer
from gpen_video.restore.backoff import OomBackoff, is_oom


class FlakyDevice:
    """Raises CUDA's out-of-memory error for batches above ``fits``."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.calls: list[int] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        if x.shape[0] > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return x * 2


def test_splits_and_remembers():
    device = FlakyDevice(fits=3)
    backoff = OomBackoff()
    x = torch.arange(10.0).view(10, 1)
    out = backoff.run(device, x)
    assert torch.equal(out, x * 2)  # every item, in order
    assert backoff.max_batch == 2  # 10 -> 5 -> 2 (halving)
    assert device.calls[:3] == [10, 5, 2]
    device.calls.clear()
    backoff.run(device, x)
    assert max(device.calls) == 2  # no retry at the size that failed


def test_single_item_oom_is_a_clear_error():
    with pytest.raises(ModelError, match=r"out of device memory.*single face"):
        OomBackoff().run(FlakyDevice(fits=0), torch.zeros(4, 1))


def test_other_errors_pass_through():
    def broken(x):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        OomBackoff().run(broken, torch.zeros(4, 1))


def test_is_oom():
    assert is_oom(torch.cuda.OutOfMemoryError("x"))
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert not is_oom(RuntimeError("expected scalar type Float"))
    assert not is_oom(ValueError("out of memory"))


def test_restorer_backs_off_and_output_is_unchanged(monkeypatch):
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=32, seed=41)
    restorer = TorchRestorer(load_generator(sd)[0])
    faces = random_faces(5, 64, seed=9)
    expected = restorer.restore(faces)
    real_forward = restorer._forward
    sizes: list[int] = []

    def limited(x):
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_forward(x)

    monkeypatch.setattr(restorer, "_forward", limited)
    got = restorer.restore(faces)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert got.shape == faces.shape
    assert sizes[0] == 5 and max(sizes[1:]) <= 2
    assert restorer.backoff.max_batch == 2


def test_cpu_micro_batches_split_large_batches():
    from gpen_video.models.torch_backend import cpu_micro_batch

    assert cpu_micro_batch(256) == 4 and cpu_micro_batch(512) == 1 and cpu_micro_batch(2048) == 1
    assert cpu_micro_batch(64) == 64
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=32, seed=42)
    restorer = TorchRestorer(load_generator(sd)[0], max_batch=2)
    unlimited = TorchRestorer(load_generator(sd)[0], max_batch=None)
    assert restorer.backoff.max_batch == 2 and unlimited.backoff.max_batch is None
    faces = random_faces(5, 64, seed=10)
    assert np.abs(restorer.restore(faces).astype(int) - unlimited.restore(faces).astype(int)).max() <= 1


def test_suggested_batch_size_on_cpu():
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=32, seed=43)
    restorer = TorchRestorer(load_generator(sd)[0])
    assert restorer.suggest_batch_size() == 64  # the CPU micro-batch at 64 px
