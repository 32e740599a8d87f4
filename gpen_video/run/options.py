"""The parts of a run chosen from the configuration: the background upscaler and the frame path it and grain
need, the host's worker threads, and the combinations of archival options that cannot work, refused in one line
before any work.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gpen_video.config import Config
from gpen_video.errors import ConfigError, WeightsNotFoundError
from gpen_video.models.registry import get_entry, locate, search_dirs
from gpen_video.ort_session import usable_cores

if TYPE_CHECKING:  # torch is imported only where a background upscale is asked for
    from gpen_video.models.upscale import Upscaler

log = logging.getLogger(__name__)


def host_workers(config: Config) -> int:
    """Worker threads of the faces and compose stages: ``threads``, or all usable cores (``usable_cores``) but the
    decode and encode threads (at least one)."""
    if config.threads:
        return config.threads
    return max(1, usable_cores() - 2)


def identity_processes(config: Config) -> int:
    """Worker processes of the identity guard's recogniser: ``identity.processes``, or a quarter of the usable
    cores (0 under 4: the guard's own thread)."""
    if config.identity.processes >= 0:
        return config.identity.processes
    return usable_cores() // 4


def refuse_conflicts(config: Config) -> None:
    if config.compose.upscale == 1 and config.compose.upscaler != "lanczos":
        raise ConfigError(f"--upscaler {config.compose.upscaler} needs --upscale {config.compose.upscaler[-1]}")
    if 0 < config.compose.upscale_tile < 64:
        raise ConfigError(
            f"compose.upscale_tile must be 0 (whole frame) or 64 or more, not {config.compose.upscale_tile}"
        )


def refuse_for_video(config: Config) -> None:
    """Options for image sequences alone, refused before any work when the input is a video."""
    if config.input.audio is not None:
        raise ConfigError(
            "--audio adds a sound file to an image sequence; a video keeps every audio track it has. To replace or "
            "add audio, mux it into the restored file afterwards "
            "(ffmpeg -i out.mov -i sound.wav -map 0 -map 1:a -c copy)"
        )


def upscaler_for(config: Config) -> Upscaler | None:
    """The background upscaler ``--upscale``/``--upscaler`` ask for; None without an upscale."""
    compose = config.compose
    if compose.upscale == 1:
        return None
    from gpen_video.models.upscale import make_upscaler

    if compose.upscaler == "lanczos":
        return make_upscaler("lanczos", compose.upscale)
    if not compose.upscaler.endswith(f"x{compose.upscale}"):
        return make_upscaler(compose.upscaler, compose.upscale)  # refuses the mismatch in one line
    entry = get_entry(compose.upscaler)  # the registry's upscaler entry: its file and where it comes from
    try:
        path = locate(entry.name, config.restore.weights_dir)
    except WeightsNotFoundError as exc:
        where = ", ".join(str(d) for d in search_dirs(config.restore.weights_dir))
        raise ConfigError(
            f"--upscaler {entry.name}: {entry.filename} is not in {where}; run: gpen-video weights fetch "
            f"{entry.name} (or put the file in one of those folders)"
        ) from exc
    return make_upscaler(compose.upscaler, compose.upscale, path, tile=compose.upscale_tile)


def frame_path_choice(config: Config) -> str:
    """``restore.device_path``, or ``off`` with an upscale or grain: those are composed on the host."""
    if (config.compose.upscale > 1 or config.compose.grain != "off") and config.restore.device_path != "off":
        log.info("background upscale / grain: faces are pasted on the host (the device path has neither yet)")
        return "off"
    return config.restore.device_path
