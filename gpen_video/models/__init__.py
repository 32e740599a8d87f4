"""GPEN models: the network, checkpoint loading, restorer backends, ONNX, and the weights registry.

``load_restorer`` is the one entry point the pipeline (and anyone scripting it) needs::

    restorer = load_restorer("gpen-bfr-2048", device="auto", precision="auto")
    restored = restorer.restore(crops)  # (N, 2048, 2048, 3) uint8 BGR -> same
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpen_video.errors import ConfigError, ModelError
from gpen_video.models.registry import DEFAULT_MODEL, REGISTRY, ModelEntry, get_entry, locate
from gpen_video.restore.restorer import Restorer

if TYPE_CHECKING:
    from gpen_video.models.checkpoint import GpenConfig, infer_config, load_generator, read_state_dict
    from gpen_video.models.gpen import FullGenerator

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MODEL",
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


MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".onnx")


def load_restorer(
    spec: str = DEFAULT_MODEL,
    device: str = "cpu",
    precision: str = "fp32",
    weights_dir: str | None = None,
    identity_size: int = 512,
    **options: object,
) -> Restorer:
    """A ready restorer from a registry name, a model file path, or ``identity`` (for scripts).

    The same loader the pipeline uses (``gpen_video.restore.loader``), with the settings as arguments.
    ``device``: ``auto`` (CUDA if present), ``cpu``, ``cuda``, ``cuda:N`` (``tensorrt`` for ``.onnx``).
    ``precision``: ``auto`` (bf16 on CUDA GPUs that support it, else fp32), ``fp32``, ``fp16``, ``bf16``;
    ``.onnx`` files run in the precision they were exported in. Extra ``options`` go to the PyTorch restorer
    (``compile``, ``channels_last``, ``max_batch``).
    """
    from gpen_video.config import RestoreConfig
    from gpen_video.restore.loader import load_restorer as load

    compile_model = bool(options.pop("compile", False))
    config = RestoreConfig(model=str(spec), device=device, precision=precision, weights_dir=weights_dir,
                           identity_size=identity_size, compile=compile_model)  # fmt: skip
    return load(config, **options)


def open_model(spec: str, device: str, precision: str, weights_dir: str | None = None, **options: object) -> Restorer:
    """The restorer for a registry name or a model file (``.onnx``: ONNX Runtime, else PyTorch)."""
    spec = str(spec).strip()
    path = Path(spec).expanduser()
    name = None
    if REGISTRY.get(spec) is not None:
        entry = get_entry(spec)
        if entry.is_upscaler:
            raise ConfigError(
                f"{entry.name} is a background upscaler: use --upscale {entry.scale} --upscaler {entry.name}, "
                "and a GPEN model for --model"
            )
        path = locate(spec, weights_dir)
        name = entry.name
    elif path.suffix.lower() not in MODEL_SUFFIXES and not path.exists():
        known = ", ".join(e.name for e in REGISTRY if not e.is_upscaler)
        raise ConfigError(
            f"unknown model '{spec}'; use one of {known}, identity, or a .pth/.pt/.safetensors/.onnx path"
        )
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix.lower() == ".onnx":
        from gpen_video.models.onnx_backend import OnnxRestorer

        if precision not in ("auto", "fp32"):
            log.info(
                "precision %s ignored for %s: an ONNX file runs in the precision it was exported in", precision, path
            )
        return OnnxRestorer(path, device=device, name=name)
    from gpen_video.models.torch_backend import load_torch_restorer
    from gpen_video.restore.device import resolve_device, resolve_precision

    resolved = resolve_device(device)
    restorer = load_torch_restorer(path, resolved, resolve_precision(precision, resolved), name=name, **options)
    if name is not None and get_entry(name).size != restorer.size:
        raise ModelError(
            f"{path} holds a {restorer.size}-px network, but {name} is {get_entry(name).size} px; the file is misnamed"
        )
    return restorer
