"""The one way a run gets its restorer: ``load_restorer(RestoreConfig)``.

``restore``, ``preview``, ``batch`` (local and Ray workers, through ``jobs.tasks.RestorerCache``) and
``gpen_video.models.load_restorer`` (for scripts) all come here, so a setting means the same thing
everywhere. Identity needs no torch import; model files are opened by ``open_model``
(``.onnx``: ONNX Runtime, else PyTorch; torch is imported only then).
"""

from __future__ import annotations

import logging
from pathlib import Path

from gpen_video.config import RestoreConfig
from gpen_video.errors import ConfigError, ModelError
from gpen_video.models.registry import REGISTRY, default_download_dir, get_entry, locate
from gpen_video.restore.device import CPU, parse_device, resolve_device, resolve_precision
from gpen_video.restore.restorer import DEFAULT_BATCH, IdentityRestorer, Restorer

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".onnx")


def load_restorer(config: RestoreConfig, device: str | None = None, **backend_options: object) -> Restorer:
    """A ready restorer for ``config``; ``device`` overrides ``config.device`` (a Ray GPU worker's own GPU).

    ``backend_options`` go to the PyTorch restorer (``channels_last``, ``max_batch``, ``warm``; benches and tests).
    """
    device = device or config.device
    if str(config.model).strip().lower() == "identity":
        # a dry run: it computes nothing, so "auto" is the CPU and no GPU is probed (no torch import)
        return IdentityRestorer(config.identity_size, parse_device(device) or CPU)
    if config.compile:  # the buckets up to the run's batch are compiled at load (on CUDA)
        backend_options = {"run_batch": config.batch_size, **backend_options, "compile": True}
    return open_model(
        config.model, device, config.precision, config.weights_dir, batch_size=config.batch_size, **backend_options
    )


def open_model(
    spec: str,
    device: str,
    precision: str,
    weights_dir: str | None = None,
    batch_size: int = 0,
    **options: object,
) -> Restorer:
    """The restorer for a registry name or a model file (``.onnx``: ONNX Runtime, else PyTorch).

    ``batch_size``: the restore stage's batch (0: the restorer's preferred one), for a TensorRT engine's profile.
    """
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
        return _open_onnx(path, device, precision, weights_dir, batch_size, name)
    from gpen_video.models.torch_backend import load_torch_restorer

    resolved = resolve_device(device)
    restorer = load_torch_restorer(path, resolved, resolve_precision(precision, resolved), name=name, **options)
    if name is not None and get_entry(name).size != restorer.size:
        raise ModelError(
            f"{path} holds a {restorer.size}-px network, but {name} is {get_entry(name).size} px; the file is misnamed"
        )
    return restorer


def _open_onnx(
    path: Path, device: str, precision: str, weights_dir: str | None, batch_size: int, name: str | None
) -> Restorer:
    """ONNX Runtime; TensorRT keeps its engine and timing caches under the weights folder and builds fp16 kernels
    for ``--precision fp16``. Elsewhere a file runs in the precision it was exported in."""
    from gpen_video.models.onnx_backend import OnnxRestorer, TensorrtPlan, gpu_kind

    tensorrt = gpu_kind(device) == "tensorrt"
    if precision not in ("auto", "fp32") and not (tensorrt and precision == "fp16"):
        log.info("precision %s ignored for %s: an ONNX file runs in the precision it was exported in", precision, path)
    plan = None
    if tensorrt:
        cache = default_download_dir(weights_dir) / "tensorrt"
        plan = TensorrtPlan(cache, batch=batch_size or DEFAULT_BATCH, fp16=precision == "fp16")
    return OnnxRestorer(path, device=device, name=name, tensorrt_plan=plan)
