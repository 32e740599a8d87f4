"""The device path's stage streams: pass-through on CPU, ordered hand-over between CUDA streams on a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpen_video.restore.streams import StageStream

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cpu_stream_is_a_pass_through():
    stream = StageStream(torch.device("cpu"))
    assert stream.stream is None and stream.mark() is None
    image = np.arange(2 * 3 * 3, dtype=np.uint16).reshape(2, 3, 3) * 3000
    with stream.enter([None], [torch.zeros(1)]):
        up = stream.upload(image)
        assert up.dtype == torch.int32  # 16-bit samples travel as int32
        back = stream.download(up + 1)
    assert np.array_equal(back, image.astype(np.int32) + 1)
    frame = np.full((4, 5, 3), 7, np.uint8)
    assert stream.upload(frame).dtype == torch.uint8


@pytest.mark.gpu
@needs_cuda
def test_cuda_hand_over_between_three_streams_keeps_order():
    """GPU twin: upload on one stream, heavy work on a second, download on a third; every value arrives."""
    device = torch.device("cuda")
    up, compute, down = StageStream(device), StageStream(device), StageStream(device)
    assert len({id(s.stream) for s in (up, compute, down)}) == 3
    for seed in range(8):
        image = np.random.default_rng(seed).integers(0, 255, (2160, 3840, 3), dtype=np.uint8)
        with up.enter():
            frame = up.upload(image)
            ready = up.mark()
        with compute.enter([ready], [frame]):
            x = frame.float()
            for _ in range(20):  # long enough that an unordered download would see unfinished work
                x = torch.sin(x) * 0 + x
            result = (x + 1).clamp(0, 255).to(torch.uint8)
            done = compute.mark()
        with down.enter([done], [result]):
            back = down.download(result)
        assert np.array_equal(back, np.minimum(image.astype(np.int32) + 1, 255).astype(np.uint8))
