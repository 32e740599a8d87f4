"""The PyTorch GPEN restorer: official pre/post-processing around a batched ``FullGenerator``.

Pre (``face_gan.img2tensor``): BGR→RGB, ``/255``, ``(x − 0.5)/0.5``. Post (``tensor2img``): ``x·0.5 + 0.5``,
clip to [0, 1], ``·255``, truncate to uint8, RGB→BGR. Both run on the model's device in fp32; only the
network runs in the chosen precision.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpen_video.models import numerics
from gpen_video.models.checkpoint import GpenConfig, load_generator
from gpen_video.models.compiled import CompiledForward, bucket_at_most, buckets_up_to
from gpen_video.models.footprint import HEADROOM, Footprint, footprint_of
from gpen_video.models.gpen import FullGenerator
from gpen_video.restore import device as devices
from gpen_video.restore.backoff import OomBackoff
from gpen_video.restore.device import Device, Precision
from gpen_video.restore.restorer import DeviceRestorer, check_batch

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``restore.device.resolve_device`` as a ``torch.device`` (for callers already holding torch objects)."""
    return devices.resolve_device(device).torch()


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``restore.device.resolve_precision`` as a ``torch.dtype``."""
    return devices.resolve_precision(precision, Device.of(device)).torch_dtype


class TorchRestorer(DeviceRestorer):
    """GPEN in PyTorch. ``restore`` for uint8 BGR crops, ``restore_tensor`` for [-1, 1] RGB on the device.

    A batch runs as one forward (the batch the caller chose is the batch the network runs). ``max_batch``:
    a ceiling on faces per forward (None: none). Out-of-memory errors lower it (see ``OomBackoff``), and
    ``forward_limit`` reports it.

    ``compile``: through ``torch.compile`` in batch buckets (``models.compiled``); ``compile_backend`` names
    another backend than inductor. ``warm``: compile every bucket up to ``run_batch`` (the batch the run will
    send; 0: ``preferred_batch()``) now, one forward of zeros each, largest first, so that no compile stalls a
    run and an out-of-memory error at load lowers the ceiling as a real one would. None: on CUDA only; on a CPU
    compiling GPEN takes long and is seldom wanted, so a bucket compiles at its first use unless asked.

    fp32 on CUDA holds TF32 off until ``close`` (``models.numerics``), and ``precision_label`` says so. A batch
    whose output holds inf or NaN raises ``ModelError``.
    """

    def __init__(
        self,
        model: FullGenerator,
        device: Device | str | torch.device = "cpu",
        precision: Precision | str | torch.dtype = "fp32",
        name: str | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        max_batch: int | None = None,
        warm: bool | None = None,
        run_batch: int = 0,
        compile_backend: str | Callable[..., Any] = "inductor",
    ) -> None:
        if isinstance(device, str):
            device = devices.resolve_device(device)
        self.device = device if isinstance(device, Device) else Device.of(device)
        if isinstance(precision, str):
            precision = devices.resolve_precision(precision, self.device)
        self.precision = precision if isinstance(precision, Precision) else Precision.of(precision)
        self.torch_device = self.device.torch()
        self.dtype = self.precision.torch_dtype
        self.size = model.size
        self.channels_last = self.device.is_cuda if channels_last is None else channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.exact_fp32 = self.device.is_cuda and self.precision is Precision.FP32
        if self.exact_fp32:
            numerics.hold_exact_fp32()
        self.model = _prepared(model, self.torch_device, self.dtype, self.channels_last)
        self.backoff = OomBackoff(max_batch=max_batch, what=f"GPEN-{self.size}")
        self.base_name = name or f"gpen-{self.size}"
        what = f"GPEN-{self.size}"
        self.compiled = CompiledForward(self.model, what, compile_backend, self.memory_format) if compile else None
        self._forward: Callable[[torch.Tensor], torch.Tensor] = self.compiled or self.model
        if self.compiled is not None and (self.device.is_cuda if warm is None else warm):
            try:
                self.warm_up(run_batch or self.preferred_batch())
            except BaseException:
                self.close()  # gives the TF32 setting back
                raise

    @property
    def name(self) -> str:  # type: ignore[override] - the report reads what ran, compiled or not
        compiled = " compiled" if self.compiled is not None and not self.compiled.eager else ""
        return f"{self.base_name} torch {self.device} {self.precision_label}{compiled}"

    @property
    def precision_label(self) -> str:
        return f"{self.precision} (TF32 off)" if self.exact_fp32 else str(self.precision)

    def warm_up(self, batch: int) -> None:
        """Compile the forward of every bucket up to ``batch``'s: one forward of zeros each, largest first."""
        if self.compiled is None:
            raise ValueError("warm_up compiles the network: build the restorer with compile=True")
        sizes = buckets_up_to(min(batch, self.backoff.max_batch or batch))
        log.info("torch.compile: warming GPEN-%d for batches of %s", self.size, ", ".join(map(str, sizes)))
        for rows in reversed(sizes):
            shape = (rows, 3, self.size, self.size)
            # an out-of-memory error lowers the ceiling (and compiles the smaller bucket on the way)
            if rows <= (self.backoff.max_batch or rows) and shape not in self.compiled.shapes:
                self.restore_tensor(torch.zeros(shape, device=self.torch_device))

    @torch.inference_mode()
    def restore_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB in [-1, 1] on this restorer's device → the network's output, same dtype as ``x``."""
        if x.ndim != 4 or x.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"expected (N, 3, {self.size}, {self.size}) input, got {tuple(x.shape)}")
        return self.backoff.run(lambda part: self._net(part).to(x.dtype), x)

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        """One forward (compiled: padded to its bucket, ``models.compiled``); the output checked finite."""
        x = x.to(self.torch_device, self.dtype, non_blocking=True)
        y = self._forward(x.contiguous(memory_format=self.memory_format))
        numerics.check_finite(y, f"GPEN-{self.size}", str(self.precision))
        return y

    @torch.inference_mode()
    def restore(self, faces: np.ndarray) -> np.ndarray:
        check_batch(faces, self.size)
        if faces.shape[0] == 0:
            return faces.copy()
        batch = torch.from_numpy(np.ascontiguousarray(faces))
        out = self.backoff.run(self._restore_uint8, batch)
        return out.numpy()

    @torch.inference_mode()
    def restore_on_device(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, S, S, 3) uint8 BGR crops already on this restorer's device -> the same, left on the device.

        The pipeline's device path: crops are cut, restored and pasted back without leaving the GPU.
        """
        if batch.shape[0] == 0:
            return batch.clone()
        return self.backoff.run(lambda part: postprocess(self._net(preprocess(part))), batch)

    def _restore_uint8(self, faces: torch.Tensor) -> torch.Tensor:
        x = faces.to(self.torch_device, non_blocking=True)
        x = preprocess(x)
        y = self._net(x)
        return postprocess(y).cpu()

    def forward_limit(self) -> int | None:
        return self.backoff.max_batch

    def preferred_batch(self, per_face_bytes: int = 0, held_bytes: int = 0, cap: int = 16) -> int:
        """A starting batch size for ``RestoreConfig.batch_size = 0``; the OOM back-off corrects it if too big.

        CPU: the micro-batch. CUDA: the faces whose forward (``footprint``, times ``HEADROOM``) and whose
        ``per_face_bytes`` the caller holds on the device (frames, crops) fit in 90 % of the free memory less
        ``held_bytes``; compiled, the largest bucket at most that, so no forward is padded.
        """
        if not self.device.is_cuda:
            return cpu_micro_batch(self.size)
        free, _ = torch.cuda.mem_get_info(self.torch_device)
        # blocks the caching allocator holds but no tensor uses are this process's to reuse
        free += torch.cuda.memory_reserved(self.torch_device) - torch.cuda.memory_allocated(self.torch_device)
        batch = faces_that_fit(int(free * 0.9) - held_bytes, self.footprint(), per_face_bytes, cap)
        return bucket_at_most(batch) if self.compiled is not None else batch

    def footprint(self) -> Footprint:
        """Peak bytes of one forward of this network (measured on the meta device, cached per architecture)."""
        arch = (self.size, self.model.style_dim, self.model.n_mlp, self.model.channel_multiplier, self.model.narrow)
        return meta_footprint(arch, self.dtype, self.channels_last)

    def close(self) -> None:
        self.model = self._forward = self.compiled = None  # type: ignore[assignment]
        if self.exact_fp32:
            numerics.release_exact_fp32()
            self.exact_fp32 = False
        if self.device.is_cuda:
            torch.cuda.empty_cache()


def _prepared(model: FullGenerator, device: torch.device, dtype: torch.dtype, channels_last: bool) -> FullGenerator:
    """``model`` on ``device`` in ``dtype`` (linears fp32), for inference; 4-D weights channels-last if asked."""
    model = model.to(device).to_precision(dtype).eval().requires_grad_(False)
    if channels_last:  # 4-D weights only: the modulated weights are 5-D (1, out, in, k, k)
        for param in model.parameters():
            if param.ndim == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
    return model


def faces_that_fit(available: int, footprint: Footprint, per_face_bytes: int = 0, cap: int = 16) -> int:
    """Faces per forward within ``available`` device bytes: each costs its forward's share (with ``HEADROOM``)
    and ``per_face_bytes`` more; at least one (the back-off says if even that does not fit), at most ``cap``."""
    per_face = footprint.per_face * HEADROOM + per_face_bytes
    return max(1, min(cap, int((available - footprint.fixed * HEADROOM) // per_face)))


@functools.cache
def meta_footprint(arch: tuple, dtype: torch.dtype, channels_last: bool = False) -> Footprint:
    """The footprint of a restore by ``FullGenerator(*arch)`` in ``dtype``, measured on the meta device: crops in,
    ``preprocess``, cast, the network, ``postprocess`` (``models.footprint``)."""
    size, style_dim, n_mlp, channel_multiplier, narrow = arch
    with torch.device("meta"):
        model = FullGenerator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier, narrow=narrow)
    model = _prepared(model, torch.device("meta"), dtype, channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def run(faces: torch.Tensor) -> None:
        postprocess(model(preprocess(faces).to(dtype).contiguous(memory_format=memory_format)))

    def crops(batch: int) -> torch.Tensor:
        return torch.zeros((batch, size, size, 3), dtype=torch.uint8, device="meta")

    return footprint_of(run, crops, [*model.parameters(), *model.buffers()])


def cpu_micro_batch(size: int) -> int:
    """Faces per forward on a CPU: 4 up to 256 px, 1 from 512 px up.

    On CPUs a bigger batch does not compute faster, and past a few hundred MB of activations it gets much
    slower: every fresh large tensor is new pages from the kernel (page faults and zeroing dominate; measured
    4× slower per face at 256 px, batch 8 vs 4). Never more than 4 at small sizes either: the restore stage pads
    every forward to its batch (one shape, the same pictures whatever the timing), so a release of one face at
    idle costs a whole batch (64 at 64 px made a 120-frame two-face run restore 576 faces for its 240, 10× the
    work). It is the CPU's ``preferred_batch``: a ``--batch-size`` the user gives is run as given.
    """
    return max(1, min(4, (4 * 256 * 256) // (size * size)))


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
    device: Device | str = "cpu",
    precision: Precision | str = "fp32",
    name: str | None = None,
    **options: object,
) -> TorchRestorer:
    """Build a ``TorchRestorer`` from a ``.pth``/``.pt``/``.safetensors`` GPEN checkpoint."""
    model, config = load_generator(path)
    log.info("loaded %s from %s", config.describe(), path)
    return TorchRestorer(model, device=device, precision=precision, name=name or _default_name(config), **options)


def _default_name(config: GpenConfig) -> str:
    return f"gpen-{config.size}"
