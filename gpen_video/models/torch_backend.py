"""The PyTorch GPEN restorer: official pre/post-processing around a batched ``FullGenerator``.

Pre (``face_gan.img2tensor``): BGR→RGB, ``/255``, ``(x − 0.5)/0.5``. Post (``tensor2img``): ``x·0.5 + 0.5``,
clip to [0, 1], ``·255``, truncate to uint8, RGB→BGR. Both run on the model's device in fp32; only the
network runs in the chosen precision.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from gpen_video.errors import ConfigError, DependencyError
from gpen_video.models.checkpoint import GpenConfig, load_generator
from gpen_video.models.gpen import FullGenerator
from gpen_video.restore.backoff import OomBackoff
from gpen_video.restore.restorer import Restorer, check_batch

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """``auto`` → the first CUDA device if there is one, else the CPU; ``cuda``/``cuda:N``/``cpu`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DependencyError(
            f"device '{device}' asked for, but this PyTorch ({torch.__version__}) sees no CUDA GPU; use --device cpu"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device '{device}'; use auto, cpu, cuda or cuda:N")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` → bf16 on CUDA GPUs that support it, else fp32."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'; use auto, fp32, fp16 or bf16")
    return PRECISIONS[precision]


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in PRECISIONS.items() if value == dtype)


class TorchRestorer(Restorer):
    """GPEN in PyTorch. ``restore`` for uint8 BGR crops, ``restore_tensor`` for [-1, 1] RGB on the device.

    ``max_batch``: at most this many faces per forward (``"auto"``: ``cpu_micro_batch`` on a CPU, no limit on
    a GPU; ``None``: no limit). Out-of-memory errors lower it further (see ``OomBackoff``).
    """

    def __init__(
        self,
        model: FullGenerator,
        device: str | torch.device = "cpu",
        precision: str | torch.dtype = "fp32",
        name: str | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        max_batch: int | str | None = "auto",
    ) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.dtype = resolve_precision(precision, self.device) if isinstance(precision, str) else precision
        self.size = model.size
        self.channels_last = self.device.type == "cuda" if channels_last is None else channels_last
        model = model.to(self.device).to_precision(self.dtype).eval().requires_grad_(False)
        if self.channels_last:  # 4-D weights only: the modulated weights are 5-D (1, out, in, k, k)
            for param in model.parameters():
                if param.ndim == 4:
                    param.data = param.data.contiguous(memory_format=torch.channels_last)
        self.model = model
        self._forward = model
        if compile:
            if not hasattr(torch, "compile"):  # pragma: no cover - torch>=2.1 is required
                raise DependencyError("torch.compile needs PyTorch 2.x")
            self._forward = torch.compile(model, dynamic=False)
        if max_batch == "auto":
            max_batch = cpu_micro_batch(self.size) if self.device.type == "cpu" else None
        self.backoff = OomBackoff(max_batch=max_batch, what=f"GPEN-{self.size}")
        base = name or f"gpen-{self.size}"
        self.name = f"{base} torch {self.device} {dtype_name(self.dtype)}"

    @torch.inference_mode()
    def restore_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB in [-1, 1] on this restorer's device → the network's output, same dtype as ``x``."""
        if x.ndim != 4 or x.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"expected (N, 3, {self.size}, {self.size}) input, got {tuple(x.shape)}")
        return self.backoff.run(lambda part: self._net(part).to(x.dtype), x)

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward(x)

    @torch.inference_mode()
    def restore(self, faces: np.ndarray) -> np.ndarray:
        check_batch(faces, self.size)
        if faces.shape[0] == 0:
            return faces.copy()
        batch = torch.from_numpy(np.ascontiguousarray(faces))
        out = self.backoff.run(self._restore_uint8, batch)
        return out.numpy()

    @torch.inference_mode()
    def restore_device(self, faces: torch.Tensor) -> torch.Tensor:
        """(N, S, S, 3) uint8 BGR crops already on this restorer's device -> the same, left on the device.

        The pipeline's device path: crops are cut, restored and pasted back without leaving the GPU.
        """
        if faces.shape[0] == 0:
            return faces.clone()
        return self.backoff.run(lambda part: postprocess(self._net(preprocess(part))), faces)

    def _restore_uint8(self, faces: torch.Tensor) -> torch.Tensor:
        x = faces.to(self.device, non_blocking=True)
        x = preprocess(x)
        y = self._net(x)
        return postprocess(y).cpu()

    def suggest_batch_size(self, cap: int = 16) -> int:
        """A starting batch size for ``RestoreConfig.batch_size = 0``; the OOM back-off corrects it if too big.

        CPU: the micro-batch. CUDA: 70 % of the free memory over an estimate of ~1.6 kB per pixel per face in
        fp32 (the official 2048 forward peaks at ~6.8 GB, spec 1.6), half that in fp16/bf16.
        """
        if self.device.type != "cuda":
            return cpu_micro_batch(self.size)
        free, _ = torch.cuda.mem_get_info(self.device)
        per_face = 1600 * self.size * self.size * (2 if self.dtype == torch.float32 else 1) // 2
        return max(1, min(cap, int(free * 0.7) // per_face))

    def close(self) -> None:
        self.model = self._forward = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def cpu_micro_batch(size: int) -> int:
    """Faces per forward on a CPU: ~4 at 256 px, 1 from 512 px up.

    On CPUs a bigger batch does not compute faster, and past a few hundred MB of activations it gets much
    slower: every fresh large tensor is new pages from the kernel (page faults and zeroing dominate; measured
    4× slower per face at 256 px, batch 8 vs 4). The caller's batch is split into these micro-batches.
    """
    return max(1, (4 * 256 * 256) // (size * size))


def preprocess(faces: torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) uint8 BGR → (N, 3, S, S) float32 RGB in [-1, 1], as the official ``img2tensor``."""
    x = faces.permute(0, 3, 1, 2).flip(1).float() / 255.0
    return (x - 0.5) / 0.5


def postprocess(y: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) RGB network output → (N, S, S, 3) uint8 BGR, as the official ``tensor2img`` (truncation)."""
    y = y.float() * 0.5 + 0.5
    y = torch.clamp(y, 0, 1) * 255.0
    return y.flip(1).permute(0, 2, 3, 1).to(torch.uint8).contiguous()


def load_torch_restorer(
    path: str | Path,
    device: str = "cpu",
    precision: str = "fp32",
    name: str | None = None,
    **options: object,
) -> TorchRestorer:
    """Build a ``TorchRestorer`` from a ``.pth``/``.pt``/``.safetensors`` GPEN checkpoint."""
    model, config = load_generator(path)
    log.info("loaded %s from %s", config.describe(), path)
    return TorchRestorer(model, device=device, precision=precision, name=name or _default_name(config), **options)


def _default_name(config: GpenConfig) -> str:
    return f"gpen-{config.size}"
