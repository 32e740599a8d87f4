"""16-bit working samples to the 8 bits a detector or the restorer takes: one conversion for the project.

Sources above 8 bits are worked on at 16 bits per channel (``uint16`` on the host; ``int32`` on a torch
device, which has no uint16 arithmetic). Eight-bit consumers get the top byte (``>> 8``): a truncation,
so 65535 → 255 and 256 → 1, the same on the host and on the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

import numpy as np

if TYPE_CHECKING:
    import torch


@overload
def to_8bit(samples: np.ndarray) -> np.ndarray: ...


@overload
def to_8bit(samples: torch.Tensor) -> torch.Tensor: ...


def to_8bit(samples: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``samples`` as uint8: 8-bit ones as they are (no copy), 16-bit ones (uint16 / int32 tensor) by their top byte."""
    if isinstance(samples, np.ndarray):
        if samples.dtype == np.uint8:
            return samples
        if samples.dtype != np.uint16:
            raise ValueError(f"expected uint8 or uint16 samples, got {samples.dtype}")
        return (samples >> 8).astype(np.uint8)
    import torch

    if samples.dtype == torch.uint8:
        return samples
    return torch.bitwise_right_shift(samples, 8).to(torch.uint8)
