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
from pathlib import Path

import numpy as np

from gpen_video.errors import ConfigError, DependencyError, ModelError
from gpen_video.ort_session import ort_session
from gpen_video.restore.device import Precision, parse_device
from gpen_video.restore.restorer import Restorer, check_batch

log = logging.getLogger(__name__)


def providers_for(device: str, available: list[str]) -> list[str | tuple[str, dict]]:
    """Execution providers for ``--device``: ``cpu``, ``cuda[:N]``, ``tensorrt[:N]`` or ``auto``."""
    kind, _, index = device.strip().lower().partition(":")
    tensorrt = kind in ("tensorrt", "trt")
    if tensorrt and index and not index.isdigit():
        raise ConfigError(f"bad device '{device}'; use auto, cpu, cuda, cuda:N or tensorrt[:N]")
    if tensorrt:
        gpu = int(index) if index else None
        wanted: list[str] = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    else:
        parsed = parse_device(device)  # the project's one reading of auto|cpu|cuda|cuda:N
        if parsed is None:
            parsed = parse_device("cuda" if "CUDAExecutionProvider" in available else "cpu")
        assert parsed is not None
        if not parsed.is_cuda:
            return ["CPUExecutionProvider"]
        gpu = parsed.index
        wanted = ["CUDAExecutionProvider"]
    options = {"device_id": gpu} if gpu is not None else {}
    missing = [p for p in wanted if p not in available]
    if missing:
        raise DependencyError(
            f"onnxruntime here has no {', '.join(missing)} (it has {', '.join(available)}); "
            "install onnxruntime-gpu or use --device cpu"
        )
    return [(p, dict(options)) for p in wanted] + ["CPUExecutionProvider"]


class OnnxRestorer(Restorer):
    """GPEN through onnxruntime; batch chunks follow the file's batch dimension when it is fixed.

    A host restorer (``device`` None): see the module docstring for why it takes no device tensors.
    """

    def __init__(self, path: str | Path, device: str = "cpu", name: str | None = None, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DependencyError("running .onnx models needs onnxruntime: pip install onnxruntime") from exc
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        providers = providers_for(device, ort.get_available_providers())
        self.session = ort_session(path, providers, threads=threads or None, spin=True, what="GPEN restorer")
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        self.input_name = next((i.name for i in inputs if i.name == "input"), inputs[0].name)
        self.output_name = next((o.name for o in outputs if o.name == "output"), outputs[0].name)
        spec = next(i for i in inputs if i.name == self.input_name)
        shape = list(spec.shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ModelError(f"{path} takes {shape}; a GPEN restorer takes (N, 3, S, S)")
        h, w = shape[2], shape[3]
        if not isinstance(h, int) or not isinstance(w, int) or h != w:
            raise ModelError(f"{path} has input size {h}×{w}; expected a fixed square size such as 2048×2048")
        extra = [i.name for i in inputs if i.name != self.input_name]
        if extra:
            raise ModelError(f"{path} has extra inputs {extra}; not a GPEN restorer")
        self.size = int(h)
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.input_dtype = np.float16 if spec.type == "tensor(float16)" else np.float32
        self.precision = Precision.FP16 if self.input_dtype == np.float16 else Precision.FP32
        used = self.session.get_providers()[0].replace("ExecutionProvider", "").lower()
        self.name = f"{name or path.stem} onnx {used}"
        log.info("loaded %s (input %s, batch %s)", path, shape, self.fixed_batch or "dynamic")

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
