"""Export a GPEN checkpoint to ONNX with the I/O of the official and FaceFusion files.

Input ``input`` and output ``output``, both ``(N, 3, S, S)`` float32 RGB in [-1, 1], batch dynamic. The
exported graph is the batched network (shared-weight convolutions), so it runs any batch size.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from gpen_video.errors import DependencyError, ModelError
from gpen_video.models.checkpoint import GpenConfig, load_generator
from gpen_video.ort_session import ort_session

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


@dataclass(frozen=True)
class ExportResult:
    path: Path
    config: GpenConfig
    opset: int
    max_abs_diff: float | None  # onnxruntime vs PyTorch on a random input, when checked


def export_onnx(
    checkpoint: str | Path,
    out_path: str | Path,
    opset: int = DEFAULT_OPSET,
    check: bool = False,
) -> ExportResult:
    """Write ``out_path`` from a GPEN checkpoint; with ``check``, run it in onnxruntime and compare."""
    try:
        import onnx  # noqa: F401 - the TorchScript exporter needs it
    except ImportError as exc:
        raise DependencyError("ONNX export needs the onnx package: pip install 'gpen-video[onnx]'") from exc
    model, config = load_generator(checkpoint)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, config.size, config.size)
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about the input-size check are expected
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                **_exporter_options(),
            )
        tmp.replace(out_path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"ONNX export of {checkpoint} failed: {str(exc).splitlines()[0][:200]}") from exc
    diff = _check(model, out_path, config.size) if check else None
    log.info("exported %s to %s (opset %d)", config.describe(), out_path, opset)
    return ExportResult(out_path, config, opset, diff)


def _exporter_options() -> dict[str, bool]:
    """The TorchScript exporter (no onnxscript needed), one self-contained file; only options this torch knows."""
    import inspect

    known = inspect.signature(torch.onnx.export).parameters
    return {k: v for k, v in {"dynamo": False, "external_data": False}.items() if k in known}


def _check(model: torch.nn.Module, path: Path, size: int) -> float:
    """Max abs difference between onnxruntime (CPU) and PyTorch on a fixed random input.

    Batch 2 (checks the dynamic batch) up to 512 px; batch 1 above, where a CPU forward costs GBs and tens of s.
    """
    import numpy as np

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2 if size <= 512 else 1, 3, size, size, generator=g) * 2 - 1
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort_session(path, threads=None, spin=True, what="exported GPEN")
    got = session.run(["output"], {"input": x.numpy()})[0]
    return float(np.abs(got - expected).max())
