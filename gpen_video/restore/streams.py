"""CUDA streams for the device path: frames go up on one stream, the network runs on another, results
come down on a third, so copies overlap compute instead of queueing behind it.

Each stage that touches the GPU owns a :class:`StageStream`. It runs its GPU work inside
``stage_stream.enter(ready, tensors)``, which makes its stream wait for the events the previous stage
recorded (``ready``), tells PyTorch's caching allocator that the tensors handed over are also used on
this stream (so their memory is not reused while this stream still reads them), and makes this stream
the thread's current one. ``mark()`` then records the event the next stage waits for. Host memory
on both ends is pinned, so the copies are real DMA transfers that do not block the CPU threads.

On a CPU device (the tests' twin of the GPU path) every call is a plain pass-through, so both run
the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


class StageStream:
    """One stage's CUDA stream, or nothing at all on a CPU device."""

    def __init__(self, device: torch.device | None) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device=device) if device is not None and device.type == "cuda" else None

    @contextmanager
    def enter(self, ready: Iterable[Any] = (), tensors: Iterable[Any] = ()) -> Iterator[None]:
        """Run the body on this stage's stream, after the events in ``ready``, using ``tensors`` safely."""
        if self.stream is None:
            yield
            return
        for event in ready:
            if event is not None:
                self.stream.wait_event(event)
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor) and tensor.is_cuda:
                tensor.record_stream(self.stream)
        with torch.cuda.stream(self.stream):
            yield

    def mark(self) -> torch.cuda.Event | None:
        """An event after all work queued so far on this stream (None on a CPU device)."""
        if self.stream is None:
            return None
        event = torch.cuda.Event()
        event.record(self.stream)
        return event

    def upload(self, array: np.ndarray) -> torch.Tensor:
        """A host array on the device, copied from pinned memory without blocking (call inside ``enter``).

        16-bit samples travel as int32: torch has no arithmetic on uint16.
        """
        host = torch.from_numpy(array if array.dtype != np.uint16 else array.astype(np.int32))
        if self.stream is None:
            return host.to(self.device or "cpu")
        return host.pin_memory().to(self.device, non_blocking=True)

    def download(self, tensor: torch.Tensor) -> np.ndarray:
        """A device tensor as a host array, through a pinned buffer; waits only for this copy (call inside
        ``enter``, after the work that produced ``tensor``)."""
        if self.stream is None or not tensor.is_cuda:
            return tensor.cpu().numpy()
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        # recorded on the stream the copy was queued on (the current one, also when called outside
        # ``enter``); a blocking event sleeps the thread instead of spinning a core the encoder could use
        done = torch.cuda.Event(blocking=True)
        done.record(torch.cuda.current_stream(tensor.device))
        done.synchronize()
        return host.numpy()
