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
    assert cpu_micro_batch(64) == 4 and cpu_micro_batch(128) == 4  # never more: every forward is padded to it
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=32, seed=42)
    restorer = TorchRestorer(load_generator(sd)[0], max_batch=2)
    unlimited = TorchRestorer(load_generator(sd)[0], max_batch=None)
    assert restorer.backoff.max_batch == 2 and unlimited.backoff.max_batch is None
    faces = random_faces(5, 64, seed=10)
    assert np.abs(restorer.restore(faces).astype(int) - unlimited.restore(faces).astype(int)).max() <= 1


def test_preferred_batch_on_cpu():
    sd = random_state_dict(64, 2, 0.125, 2, style_dim=32, seed=43)
    restorer = TorchRestorer(load_generator(sd)[0])
    assert restorer.preferred_batch() == 4  # the CPU micro-batch at 64 px


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_oom_shrinks_the_batch_and_keeps_every_face():
    """GPU twin of test_restorer_backs_off_and_output_is_unchanged, with a real out-of-memory error: the
    process is capped at what 8 faces need (measured), so a 64-face batch cannot fit and must be split."""
    sd = random_state_dict(256, 1, 0.5, 2, seed=21)
    faces = random_faces(64, 256, seed=22)
    restorer = TorchRestorer(load_generator(sd)[0], device="cuda", precision="fp32", max_batch=None)
    crops = torch.from_numpy(faces).cuda()
    expected = restorer.restore_on_device(crops[::16]).cpu().numpy()  # 4 faces, also the peak measurement
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    restorer.restore_on_device(crops[:4])
    per_face = (torch.cuda.max_memory_allocated() - base) / 4
    torch.cuda.empty_cache()
    held = torch.cuda.memory_reserved()  # the cap counts the allocator's reserved blocks, not just live tensors
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (held + 8 * per_face) / total))
    try:
        got = restorer.restore_on_device(crops).cpu().numpy()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert restorer.backoff.max_batch is not None and restorer.backoff.max_batch < 64
    assert got.shape == faces.shape
    assert np.abs(got[::16].astype(int) - expected.astype(int)).max() <= 1
