"""The one way a run gets its restorer: ``load_restorer(RestoreConfig)``.

``restore``, ``preview``, ``batch`` (local and Ray workers, through ``jobs.tasks.RestorerCache``) and
``gpen_video.models.load_restorer`` (for scripts) all come here, so a setting means the same thing
everywhere. Identity needs no torch import; model files are opened by ``gpen_video.models``.
"""

from __future__ import annotations

from gpen_video.config import RestoreConfig
from gpen_video.restore.device import CPU, parse_device
from gpen_video.restore.restorer import IdentityRestorer, Restorer


def load_restorer(config: RestoreConfig, device: str | None = None, **backend_options: object) -> Restorer:
    """A ready restorer for ``config``; ``device`` overrides ``config.device`` (a Ray GPU worker's own GPU).

    ``backend_options`` go to the PyTorch restorer (``channels_last``, ``max_batch``; benches and tests).
    """
    device = device or config.device
    if str(config.model).strip().lower() == "identity":
        # a dry run: it computes nothing, so "auto" is the CPU and no GPU is probed (no torch import)
        return IdentityRestorer(config.identity_size, parse_device(device) or CPU)
    from gpen_video.models import open_model

    if config.compile:
        backend_options = {**backend_options, "compile": True}
    return open_model(config.model, device, config.precision, config.weights_dir, **backend_options)
