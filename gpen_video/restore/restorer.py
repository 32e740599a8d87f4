"""The contract every face restorer keeps, and the identity restorer for dry runs and tests.

A restorer turns a batch of aligned crops into restored crops of the same shape. The pipeline knows
only this interface: what it declares is all it may use (no probing for optional methods).

- ``Restorer``: host arrays in and out (``restore``). ``device`` is None: it takes no device tensors.
- ``DeviceRestorer``: also ``restore_on_device`` for crops already on ``device`` (the device path keeps
  frames there from upload to paste-back).

GPEN in PyTorch and identity are ``DeviceRestorer``s; GPEN in ONNX Runtime is a host ``Restorer``
(see ``gpen_video.models.onnx_backend`` for why).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from gpen_video.restore.device import CPU, Device, Precision

if TYPE_CHECKING:
    import torch

#: faces per restore call when neither the user nor the restorer says otherwise
DEFAULT_BATCH = 4


class Restorer(ABC):
    """Restores aligned face crops: ``(N, S, S, 3) uint8 BGR -> (N, S, S, 3) uint8 BGR``.

    ``restore(batch)`` runs the whole batch in one forward of the network; only an out-of-memory error
    (or a model file with a fixed batch) makes it run smaller ones, and ``forward_limit`` then says so.
    """

    #: short description for logs and reports (e.g. "gpen-bfr-2048 torch cuda bf16")
    name: str = "restorer"
    #: crop side in pixels the model takes and returns
    size: int
    #: where ``restore_on_device`` takes its tensors; None: host arrays only
    device: Device | None = None
    #: the network's arithmetic
    precision: Precision = Precision.FP32

    @property
    def precision_label(self) -> str:
        """``precision`` as the report shows it, with what it means here (e.g. "fp32 (TF32 off)")."""
        return str(self.precision)

    def preferred_batch(self, per_face_bytes: int = 0, held_bytes: int = 0) -> int:
        """Faces per call when the user did not choose (``restore.batch_size: 0``).

        ``per_face_bytes``/``held_bytes``: what the caller will hold on ``device`` besides the restorer, for each
        face of a batch (its frame and crops while it waits) and in all (frames in flight); a restorer that sizes
        its batch from the device's memory counts them against it.
        """
        return DEFAULT_BATCH

    def forward_limit(self) -> int | None:
        """The most faces one forward runs at present (out-of-memory back-off, a fixed-batch file); None: no limit."""
        return None

    @abstractmethod
    def restore(self, batch: np.ndarray) -> np.ndarray:
        """Restore a batch of aligned BGR crops; the output has the input's shape and dtype."""

    def close(self) -> None:  # noqa: B027 - optional hook; most restorers hold nothing to release
        """Release device memory; the restorer is not used afterwards."""


class DeviceRestorer(Restorer):
    """A restorer that also takes crops already on its device, and leaves the result there."""

    device: Device

    @abstractmethod
    def restore_on_device(self, batch: torch.Tensor) -> torch.Tensor:
        """``(N, S, S, 3)`` uint8 BGR crops on ``device`` → the restored crops, same shape, on ``device``."""


class IdentityRestorer(DeviceRestorer):
    """Returns its input: exercises alignment, batching and compositing without a model."""

    def __init__(self, size: int = 512, device: Device = CPU) -> None:
        self.size = size
        self.device = device
        self.name = f"identity@{size}"

    def restore(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.size)
        return batch.copy()

    def restore_on_device(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.clone()


def check_batch(faces: np.ndarray, size: int) -> None:
    """Raise ValueError unless ``faces`` is an ``(N, size, size, 3) uint8`` batch."""
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (size, size, 3):
        raise ValueError(f"expected (N, {size}, {size}, 3) uint8 faces, got {faces.shape} {faces.dtype}")
