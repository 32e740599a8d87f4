"""The contract every face restorer keeps, and the identity restorer for dry runs and tests.

A restorer turns a batch of aligned crops into restored crops of the same shape. The pipeline only
knows this interface; GPEN (PyTorch), GPEN (ONNX Runtime) and identity all implement it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Restorer(ABC):
    """Restores aligned face crops: ``(N, S, S, 3) uint8 BGR -> (N, S, S, 3) uint8 BGR``."""

    #: crop side in pixels the model takes and returns
    size: int
    #: short description for logs and reports (e.g. "gpen-bfr-2048 torch cuda bf16")
    name: str = "restorer"

    @abstractmethod
    def restore(self, faces: np.ndarray) -> np.ndarray:
        """Restore a batch of aligned BGR crops; the output has the input's shape and dtype."""

    def close(self) -> None:  # noqa: B027 - optional hook; most restorers hold nothing to release
        """Release device memory; the restorer is not used afterwards."""


class IdentityRestorer(Restorer):
    """Returns its input: exercises alignment, batching and compositing without a model."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.name = f"identity@{size}"

    def restore(self, faces: np.ndarray) -> np.ndarray:
        check_batch(faces, self.size)
        return faces.copy()

    def restore_device(self, faces: Any) -> Any:
        """The device-path twin of ``restore``: a torch tensor in, a copy out, on the same device."""
        return faces.clone()


def check_batch(faces: np.ndarray, size: int) -> None:
    """Raise ValueError unless ``faces`` is an ``(N, size, size, 3) uint8`` batch."""
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (size, size, 3):
        raise ValueError(f"expected (N, {size}, {size}, 3) uint8 faces, got {faces.shape} {faces.dtype}")
