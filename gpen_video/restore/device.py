"""Where a restorer runs and in what precision: ``auto|cpu|cuda|cuda:N`` and ``auto|fp32|fp16|bf16``, resolved once.

Settings arrive as strings (presets, flags, manifest rows); everything below the loader sees a typed
``Device`` and ``Precision``. ``Device`` is a plain value (no torch import), so identity dry runs and
``--help`` stay light; ``Device.torch()`` and ``Precision.torch_dtype`` give the torch objects where
torch is already in use.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gpen_video.errors import ConfigError, DependencyError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


@dataclass(frozen=True)
class Device:
    """A compute device: the CPU, or one CUDA GPU (``index`` None: the current one)."""

    kind: Literal["cpu", "cuda"]
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def torch(self) -> torch.device:
        import torch

        return torch.device(str(self))

    @classmethod
    def of(cls, device: torch.device) -> Device:
        if device.type not in ("cpu", "cuda"):
            raise ConfigError(f"unsupported device '{device}'; use {DEVICE_CHOICES}")
        return cls("cuda", device.index) if device.type == "cuda" else cls("cpu")


CPU = Device("cpu")


class Precision(enum.Enum):
    """The network's arithmetic; pre/post-processing is always fp32."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"

    def __str__(self) -> str:
        return self.value

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}[self]

    @classmethod
    def of(cls, dtype: torch.dtype) -> Precision:
        for precision in cls:
            if precision.torch_dtype == dtype:
                return precision
        raise ConfigError(f"unsupported precision {dtype}; use fp32, fp16 or bf16")


def parse_device(text: str) -> Device | None:
    """The device ``text`` names, checked for form only (no GPU is probed); None for ``auto``."""
    value = str(text).strip().lower()
    if value == "auto":
        return None
    kind, _, index = value.partition(":")
    if kind == "cpu" and not index:
        return CPU
    if kind == "cuda" and (not index or index.isdigit()):
        return Device("cuda", int(index) if index else None)
    raise ConfigError(f"unknown device '{text}'; use {DEVICE_CHOICES}")


def resolve_device(text: str) -> Device:
    """``auto`` → the first CUDA device if torch sees one, else the CPU; a named GPU must exist."""
    device = parse_device(text)
    if device is not None and not device.is_cuda:
        return device
    import torch

    if device is None:
        return Device("cuda") if torch.cuda.is_available() else CPU
    if not torch.cuda.is_available():
        raise DependencyError(
            f"device '{text}' asked for, but this PyTorch ({torch.__version__}) sees no CUDA GPU; use --device cpu"
        )
    return device


def resolve_precision(text: str, device: Device) -> Precision:
    """``auto`` → bf16 on CUDA GPUs that support it, else fp32."""
    value = str(text).strip().lower()
    if value == "auto":
        if device.is_cuda:
            import torch

            if torch.cuda.is_bf16_supported():
                return Precision.BF16
        return Precision.FP32
    try:
        return Precision(value)
    except ValueError:
        raise ConfigError(f"unknown precision '{text}'; use auto, fp32, fp16 or bf16") from None
