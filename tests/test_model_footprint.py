"""The automatic batch comes from the network's own footprint, measured on the meta device: the figures for the
released networks, the measurement against a real allocator's count, and the budget's arithmetic."""

from __future__ import annotations

import pytest
import torch

from gpen_video.models.footprint import HEADROOM, Footprint, peak_bytes
from gpen_video.models.gpen import FullGenerator
from gpen_video.models.torch_backend import faces_that_fit, meta_footprint, postprocess, preprocess

RELEASED_2048 = (2048, 512, 8, 2, 1)


@pytest.mark.parametrize(("dtype", "low", "high"), [(torch.float32, 440, 480), (torch.bfloat16, 220, 240)])
def test_gpen_2048_holds_about_450_bytes_a_pixel_in_fp32(dtype, low, high):
    """The figures in ``models.footprint``'s table (the 1600/800 B/px estimate this replaced was 3.5x too high)."""
    footprint = meta_footprint(RELEASED_2048, dtype, channels_last=True)
    assert low <= footprint.per_face / 2048**2 <= high
    assert footprint.fixed < footprint.per_face / 4  # the weight casts: small beside a face's activations


def _allocated_peak(model: FullGenerator, faces: torch.Tensor) -> int:
    """The CPU allocator's own count (the profiler's memory events), peak over one restore after a warm one."""
    run = lambda: postprocess(model(preprocess(faces)))  # noqa: E731
    with torch.inference_mode():
        run()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
            run()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def test_meta_measurement_bounds_what_the_cpu_allocates():
    """The same forward on real CPU tensors: the allocator holds more than the live tensors (convolution
    workspaces), by less than ``HEADROOM``. Measured 1.28-1.29x at 64 and 128 px."""
    arch = (64, 32, 1, 1, 0.125)
    model = FullGenerator(64, 32, 1, channel_multiplier=1, narrow=0.125).eval().requires_grad_(False)
    faces = torch.zeros((2, 64, 64, 3), dtype=torch.uint8)
    estimate = meta_footprint(arch, torch.float32).bytes_for(2)
    with torch.inference_mode():
        live = peak_bytes(lambda: postprocess(model(preprocess(faces))), [*model.parameters(), *model.buffers(), faces])
    assert live == estimate, "meta shapes are the real ones: the same bytes live at the peak"
    assert 1.0 < _allocated_peak(model, faces) / estimate <= HEADROOM


def test_the_budget_counts_forward_headroom_and_what_the_caller_holds():
    footprint = Footprint(per_face=1_000, fixed=500)
    assert faces_that_fit(100_000, footprint, cap=100) == int((100_000 - 500 * HEADROOM) // (1_000 * HEADROOM))
    assert faces_that_fit(100_000, footprint, per_face_bytes=650, cap=100) == 49
    assert faces_that_fit(100_000, footprint) == 16  # the cap
    assert faces_that_fit(100, footprint) == 1  # never none: the back-off says so if one does not fit


def test_frames_on_the_device_count_against_the_budget():
    from types import SimpleNamespace

    from gpen_video.run.stages import FRAMES_IN_FLIGHT, device_holdings

    def info(bits: int) -> SimpleNamespace:
        return SimpleNamespace(video=SimpleNamespace(width=3840, height=2160, colour=SimpleNamespace(bit_depth=bits)))

    crop = 2048 * 2048 * 3
    assert device_holdings(info(8), 2048, on_device=False) == (2 * crop, 0)  # the batch's crops, in and out
    frame = 3840 * 2160 * (3 + 4)  # uint8 samples and compose's float32 mask
    assert device_holdings(info(8), 2048, on_device=True) == (frame + 3 * crop, FRAMES_IN_FLIGHT * frame)
    per_face, held = device_holdings(info(10), 2048, on_device=True)
    assert per_face == 3840 * 2160 * 16 + 6 * crop and held == FRAMES_IN_FLIGHT * 3840 * 2160 * 16  # int32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_forward_fits_in_the_estimate(precision):
    """GPU twin of the CPU measurement: what CUDA's allocator peaks at over a restore of 2 faces, against the
    meta figure (live tensors) and the figure with ``HEADROOM`` the batch is sized by."""
    from model_helpers import random_state_dict

    from gpen_video.models import load_generator
    from gpen_video.models.torch_backend import TorchRestorer

    restorer = TorchRestorer(load_generator(random_state_dict(512, 2, 1, 8, seed=81))[0], "cuda", precision)
    crops = torch.zeros((2, 512, 512, 3), dtype=torch.uint8, device="cuda")
    restorer.restore_on_device(crops)  # cuDNN's first-call choices out of the count
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    restorer.restore_on_device(crops)
    peak = torch.cuda.max_memory_allocated() - base
    estimate = restorer.footprint().bytes_for(2)
    assert 0.8 * estimate <= peak <= HEADROOM * estimate, f"peak {peak / 2**20:.0f} MiB, meta {estimate / 2**20:.0f}"


def test_cuda_batch_is_what_fits_in_free_memory(monkeypatch):
    """The CUDA branch of ``preferred_batch`` with the device's answers faked: 5.5 faces fit, so 5 (4 compiled:
    a bucket, so no forward is padded); what the run holds on the device takes its share first."""
    from model_helpers import random_state_dict

    from gpen_video.models import load_generator
    from gpen_video.models.torch_backend import TorchRestorer
    from gpen_video.restore.device import Device

    sd = random_state_dict(64, 2, 0.125, 1, style_dim=16, seed=82)
    eager, compiled = (TorchRestorer(load_generator(sd)[0], compile=c) for c in (False, True))
    face = int(eager.footprint().per_face * HEADROOM)
    free = int((5.5 * face + eager.footprint().fixed * HEADROOM) / 0.9)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free - 1000, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2000)  # 1000 cached: reusable
    for restorer in (eager, compiled):
        restorer.device = Device("cuda")
    assert eager.preferred_batch() == 5 and compiled.preferred_batch() == 4
    assert eager.preferred_batch(held_bytes=int(1.6 * face)) == 3
    assert eager.preferred_batch(per_face_bytes=face) == 2  # each face holds as much again
