"""GPEN models: the network, checkpoint loading, restorer backends, ONNX, and the weights registry.

``load_restorer`` is the one entry point the pipeline (and anyone scripting it) needs::

    restorer = load_restorer("gpen-bfr-2048", device="auto", precision="auto")
    restored = restorer.restore(crops)  # (N, 2048, 2048, 3) uint8 BGR -> same
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpen_video.config import RestoreConfig
from gpen_video.models import loader
from gpen_video.models.loader import MODEL_SUFFIXES, open_model
from gpen_video.models.registry import DEFAULT_MODEL, REGISTRY, ModelEntry
from gpen_video.restore.restorer import Restorer

if TYPE_CHECKING:
    from gpen_video.models.checkpoint import GpenConfig, infer_config, load_generator, read_state_dict
    from gpen_video.models.gpen import FullGenerator

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_SUFFIXES",
    "REGISTRY",
    "FullGenerator",
    "GpenConfig",
    "ModelEntry",
    "infer_config",
    "load_generator",
    "load_restorer",
    "open_model",
    "read_state_dict",
]

# torch is imported on first use, so `gpen-video --help`, `weights list` and identity dry runs stay light
_LAZY = {
    "FullGenerator": "gpen_video.models.gpen",
    "GpenConfig": "gpen_video.models.checkpoint",
    "infer_config": "gpen_video.models.checkpoint",
    "load_generator": "gpen_video.models.checkpoint",
    "read_state_dict": "gpen_video.models.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_restorer(
    spec: str = DEFAULT_MODEL,
    device: str = "cpu",
    precision: str = "fp32",
    weights_dir: str | None = None,
    identity_size: int = 512,
    **options: object,
) -> Restorer:
    """A ready restorer from a registry name, a model file path, or ``identity`` (for scripts).

    The same loader the pipeline uses (``gpen_video.models.loader``), with the settings as arguments.
    ``device``: ``auto`` (CUDA if present), ``cpu``, ``cuda``, ``cuda:N`` (``tensorrt`` for ``.onnx``).
    ``precision``: ``auto`` (bf16 on CUDA GPUs that support it, else fp32), ``fp32``, ``fp16``, ``bf16``;
    ``.onnx`` files run in the precision they were exported in (``fp16`` with ``tensorrt`` builds fp16 TensorRT
    kernels). Extra ``options`` go to the PyTorch restorer
    (``compile``, ``channels_last``, ``max_batch``).
    """
    compile_model = bool(options.pop("compile", False))
    config = RestoreConfig(model=str(spec), device=device, precision=precision, weights_dir=weights_dir,
                           identity_size=identity_size, compile=compile_model)  # fmt: skip
    return loader.load_restorer(config, **options)
