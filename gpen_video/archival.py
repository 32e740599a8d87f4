"""Issue 15's parts of a run chosen from the configuration: the background upscaler and the frame path it
and grain need, and the combinations of archival options that cannot work, refused in one line before any
work. (``--deinterlace progressive`` and ``--audio``, declared but not wired yet, are refused where they
would be read: ``io.sources.deinterlace_mode`` and ``sequence_restore``.)
"""

from __future__ import annotations

import logging

from gpen_video.align.upscale import Upscaler, make_upscaler
from gpen_video.config import Config
from gpen_video.errors import ConfigError
from gpen_video.models.registry import find_file, search_dirs

log = logging.getLogger(__name__)

UPSCALER_FILES = {
    "realesrgan-x2": "RealESRGAN_x2plus.pth",
    "realesrgan-x4": "RealESRGAN_x4plus.pth",
    "realesrnet-x2": "realesrnet_x2.pth",
    "realesrnet-x4": "realesrnet_x4.pth",
}


def refuse_conflicts(config: Config) -> None:
    if config.compose.upscale == 1 and config.compose.upscaler != "lanczos":
        raise ConfigError(f"--upscaler {config.compose.upscaler} needs --upscale {config.compose.upscaler[-1]}")
    if 0 < config.compose.upscale_tile < 64:
        raise ConfigError(
            f"compose.upscale_tile must be 0 (whole frame) or 64 or more, not {config.compose.upscale_tile}"
        )


def upscaler_for(config: Config) -> Upscaler | None:
    """The background upscaler ``--upscale``/``--upscaler`` ask for; None without an upscale."""
    compose = config.compose
    if compose.upscale == 1:
        return None
    if compose.upscaler == "lanczos":
        return make_upscaler("lanczos", compose.upscale)
    if not compose.upscaler.endswith(f"x{compose.upscale}"):
        return make_upscaler(compose.upscaler, compose.upscale)  # refuses the mismatch in one line
    filename = UPSCALER_FILES[compose.upscaler]
    path = find_file([filename], config.restore.weights_dir)
    if path is None:
        where = ", ".join(str(d) for d in search_dirs(config.restore.weights_dir))
        raise ConfigError(
            f"--upscaler {compose.upscaler}: {filename} is not in {where}; download it (Real-ESRGAN's or GPEN's "
            "release) into one of them (`gpen-video weights fetch` does not know it yet)"
        )
    return make_upscaler(compose.upscaler, compose.upscale, path, tile=compose.upscale_tile)


def frame_path_choice(config: Config) -> str:
    """``restore.device_path``, or ``off`` with an upscale or grain: those are composed on the host."""
    if (config.compose.upscale > 1 or config.compose.grain != "off") and config.restore.device_path != "off":
        log.info("background upscale / grain: faces are pasted on the host (the device path has neither yet)")
        return "off"
    return config.restore.device_path
