"""Run GPEN ``.onnx`` files (our exports, the official ``onnx_export.py`` ones, FaceFusion's ``gpen_bfr_*.onnx``).

All of them take ``input`` (N, 3, S, S) RGB in [-1, 1] and give ``output`` of the same shape. Files with a
fixed batch (FaceFusion's are 1) are fed chunks of that size. Pre/post-processing is the official GPEN one
(truncation to uint8), the same as the PyTorch restorer, so the two backends agree.

Why ``OnnxRestorer`` is a host ``Restorer``, not a ``DeviceRestorer``: ONNX Runtime can take device
buffers (IOBinding with ``buffer_ptr=tensor.data_ptr()``), but its CUDA provider then runs on a stream of
its own, unordered with the device path's upload/compute/download streams (``restore.streams``). Joining
them needs the provider's ``user_compute_stream`` option set per session to the compute stage's stream,
pre/post-processing in torch, and an output buffer bound per batch; none of that can be verified on this
project's CPU-only test machines, so the ONNX backend stays on the host path (``restore.device_path: on``
with an ``.onnx`` model is refused with that reason) until it can be tested on a GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpen_video.errors import ConfigError, DependencyError, ModelError
from gpen_video.ort_session import CPU_ONLY, ort_session
from gpen_video.restore.device import Precision, parse_device
from gpen_video.restore.restorer import DEFAULT_BATCH, Restorer, check_batch

log = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
#: the largest batch a TensorRT engine is built for (its profile's max), unless the restore batch is larger
TRT_MAX_BATCH = 16
GPU_HINT = (
    "install onnxruntime-gpu and the CUDA and cuDNN libraries it was built for on the library path "
    "(https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html#requirements), or use --device cpu"
)
TRT_HINT = (
    "install the TensorRT libraries this onnxruntime-gpu was built for on the library path "
    "(https://onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html#requirements), "
    "or use --device cuda"
)


@dataclass(frozen=True)
class TensorrtPlan:
    """What a TensorRT session is built with: its caches, the batch range of its engine, fp16 or not.

    Building a TensorRT engine for GPEN-2048 takes minutes; the engine cache keeps the built engine (named by
    ONNX Runtime from the model, the GPU and the TensorRT version) and the timing cache the kernel timings, so
    only the first run on a machine pays. A file with a dynamic batch gets one profile from 1 to
    ``max(TRT_MAX_BATCH, batch)`` faces, tuned for ``batch`` (the restore stage pads every batch to its size),
    so the engine is built once, not again for each new batch size.
    """

    cache_dir: Path  # engines in cache_dir/engines, the timing cache in cache_dir/timing
    batch: int = DEFAULT_BATCH
    fp16: bool = False

    @property
    def engine_dir(self) -> Path:
        return self.cache_dir / "engines"

    @property
    def timing_dir(self) -> Path:
        return self.cache_dir / "timing"

    def options(self, input_name: str, size: int, dynamic_batch: bool) -> dict[str, str]:
        """The TensorRT provider's options for a GPEN input ``input_name`` of ``size``×``size`` pixels."""
        options = {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(self.engine_dir),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(self.timing_dir),
            "trt_fp16_enable": str(self.fp16),
        }
        if dynamic_batch:
            batch = max(1, self.batch)
            for key, n in (("min", 1), ("opt", batch), ("max", max(TRT_MAX_BATCH, batch))):
                options[f"trt_profile_{key}_shapes"] = f"{input_name}:{n}x3x{size}x{size}"
        return options


def gpu_kind(device: str) -> str | None:
    """``tensorrt`` or ``cuda`` where ``--device`` names one explicitly, else None (``auto``, ``cpu``)."""
    kind = device.strip().lower().partition(":")[0]
    return "tensorrt" if kind in ("tensorrt", "trt") else kind if kind == "cuda" else None


def cuda_options(gpu: int | None) -> dict[str, str]:
    """The CUDA provider's options: the GPU, an exhaustive cuDNN search (batches are padded to one size, so it
    runs once per shape) and an arena that grows by what is asked (GPEN-2048 activations are gigabytes; the
    default next-power-of-two growth can reserve almost twice that)."""
    options = {"cudnn_conv_algo_search": "EXHAUSTIVE", "arena_extend_strategy": "kSameAsRequested"}
    if gpu is not None:
        options["device_id"] = str(gpu)
    return options


def providers_for(
    device: str, available: list[str], tensorrt: dict[str, str] | None = None
) -> list[str | tuple[str, dict[str, str]]]:
    """Execution providers for ``--device``: ``cpu``, ``cuda[:N]``, ``tensorrt[:N]`` or ``auto``.

    ``tensorrt``: the TensorRT provider's own options (``TensorrtPlan.options``), for ``tensorrt[:N]``.
    """
    index = device.strip().lower().partition(":")[2]
    if gpu_kind(device) == "tensorrt":
        if index and not index.isdigit():
            raise ConfigError(f"bad device '{device}'; use auto, cpu, cuda, cuda:N or tensorrt[:N]")
        gpu = int(index) if index else None
        wanted: list[str] = [TRT_EP, CUDA_EP]
    else:
        parsed = parse_device(device)  # the project's one reading of auto|cpu|cuda|cuda:N
        if parsed is None:
            parsed = parse_device("cuda" if CUDA_EP in available else "cpu")
        assert parsed is not None
        if not parsed.is_cuda:
            return [CPU_EP]
        gpu = parsed.index
        wanted = [CUDA_EP]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise DependencyError(
            f"onnxruntime here has no {', '.join(missing)} (it has {', '.join(available)}); "
            "install onnxruntime-gpu or use --device cpu"
        )
    providers: list[str | tuple[str, dict[str, str]]] = []
    if TRT_EP in wanted:
        device_id = {"device_id": str(gpu)} if gpu is not None else {}
        providers.append((TRT_EP, {**device_id, **(tensorrt or {})}))
    return [*providers, (CUDA_EP, cuda_options(gpu)), CPU_EP]


@dataclass(frozen=True)
class GpenIO:
    """The input and output of a GPEN ``.onnx`` file, checked."""

    input_name: str
    output_name: str
    size: int
    fixed_batch: int | None  # None: the batch is dynamic
    input_type: str  # "tensor(float)" or "tensor(float16)"

    @classmethod
    def of(cls, session: Any, path: Path) -> GpenIO:
        inputs = session.get_inputs()
        outputs = session.get_outputs()
        input_name = next((i.name for i in inputs if i.name == "input"), inputs[0].name)
        output_name = next((o.name for o in outputs if o.name == "output"), outputs[0].name)
        spec = next(i for i in inputs if i.name == input_name)
        shape = list(spec.shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ModelError(f"{path} takes {shape}; a GPEN restorer takes (N, 3, S, S)")
        h, w = shape[2], shape[3]
        if not isinstance(h, int) or not isinstance(w, int) or h != w:
            raise ModelError(f"{path} has input size {h}×{w}; expected a fixed square size such as 2048×2048")
        extra = [i.name for i in inputs if i.name != input_name]
        if extra:
            raise ModelError(f"{path} has extra inputs {extra}; not a GPEN restorer")
        fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        return cls(input_name, output_name, int(h), fixed, spec.type)


def _tensorrt_options(path: Path, plan: TensorrtPlan | None) -> dict[str, str]:
    """The TensorRT options for ``path``: its input read first (a CPU session, no optimisation), cache folders made."""
    plan = plan or TensorrtPlan(path.parent / "tensorrt")
    probe = ort_session(path, CPU_ONLY, threads=1, what="GPEN restorer", optimize=False)
    io = GpenIO.of(probe, path)
    del probe
    for folder in (plan.engine_dir, plan.timing_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelError(
                f"cannot make the TensorRT cache folder {folder} ({exc.strerror}); "
                "give a writable --weights-dir, or use --device cuda"
            ) from exc
    return plan.options(io.input_name, io.size, io.fixed_batch is None)


class OnnxRestorer(Restorer):
    """GPEN through onnxruntime; batch chunks follow the file's batch dimension when it is fixed.

    A host restorer (``device`` None): see the module docstring for why it takes no device tensors.
    ``--device cuda`` or ``tensorrt`` gets those providers or a one-line error, never a silent CPU run;
    ``tensorrt`` builds its engine with ``tensorrt_plan`` (caches, batch profile, fp16; default: caches beside the
    model file).
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        name: str | None = None,
        threads: int = 0,
        tensorrt_plan: TensorrtPlan | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DependencyError("running .onnx models needs onnxruntime: pip install onnxruntime") from exc
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        kind = gpu_kind(device)
        available = ort.get_available_providers()
        providers_for(device, available)  # a device this onnxruntime cannot serve is refused before any work
        trt = _tensorrt_options(path, tensorrt_plan) if kind == "tensorrt" else None
        providers = providers_for(device, available, trt)
        required = {"tensorrt": [TRT_EP, CUDA_EP], "cuda": [CUDA_EP]}.get(kind or "", [])
        hint = f"--device {device} needs it: " + (TRT_HINT if kind == "tensorrt" else GPU_HINT)
        self.session = ort_session(
            path, providers, threads=threads or None, spin=True, what="GPEN restorer", require=required, hint=hint
        )
        io = GpenIO.of(self.session, path)
        self.input_name, self.output_name, self.size, self.fixed_batch = (
            io.input_name, io.output_name, io.size, io.fixed_batch
        )  # fmt: skip
        self.input_dtype = np.float16 if io.input_type == "tensor(float16)" else np.float32
        fp16 = self.input_dtype == np.float16 or bool(trt and trt.get("trt_fp16_enable") == "True")
        self.precision = Precision.FP16 if fp16 else Precision.FP32
        loaded = self.session.get_providers()
        self.name = f"{name or path.stem} onnx {loaded[0].replace('ExecutionProvider', '').lower()}"
        if any(p[0] == CUDA_EP for p in providers if isinstance(p, tuple)) and CUDA_EP not in loaded:
            log.warning("onnxruntime could not load CUDA for %s (--device %s); it runs on the CPU", path, device)
        log.info("loaded %s (input %s, batch %s)", path, io.size, self.fixed_batch or "dynamic")

    def forward_limit(self) -> int | None:
        return self.fixed_batch

    def run_tensor(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float RGB in [-1, 1] → network output (float32), chunked to the file's batch."""
        step = self.fixed_batch or max(1, x.shape[0])
        outs = []
        for start in range(0, x.shape[0], step):
            part = x[start : start + step].astype(self.input_dtype, copy=False)
            pad = step - part.shape[0] if self.fixed_batch else 0
            if pad:
                part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), part.dtype)])
            y = self.session.run([self.output_name], {self.input_name: part})[0]
            outs.append(y[: step - pad].astype(np.float32, copy=False))
        return np.concatenate(outs) if len(outs) > 1 else outs[0]

    def restore(self, faces: np.ndarray) -> np.ndarray:
        check_batch(faces, self.size)
        if faces.shape[0] == 0:
            return faces.copy()
        x = faces[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
        x = (x - np.float32(0.5)) / np.float32(0.5)
        y = self.run_tensor(np.ascontiguousarray(x))
        y = y * np.float32(0.5) + np.float32(0.5)
        y = np.clip(y, 0, 1) * np.float32(255.0)
        return np.ascontiguousarray(y.astype(np.uint8).transpose(0, 2, 3, 1)[..., ::-1])

    def close(self) -> None:
        self.session = None
