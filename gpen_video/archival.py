"""Issue 15's options that this build does not carry out yet, refused in one line each before any work.

A declared option must never be read by nothing: until its stage is wired, asking for it is a
``ConfigError`` that says so, and the run does not start.
"""

from __future__ import annotations

from gpen_video.config import Config
from gpen_video.errors import ConfigError

NOT_YET = "is not wired into the run yet (issue 15); leave it out"


def refuse_unbuilt(config: Config) -> None:
    if config.compose.upscale != 1:
        raise ConfigError(f"--upscale {config.compose.upscale} {NOT_YET}")
    if config.compose.grain != "off":
        raise ConfigError(f"--grain {config.compose.grain} {NOT_YET}")
    if config.reader.deinterlace != "keep":
        raise ConfigError(f"--deinterlace {config.reader.deinterlace} {NOT_YET}")
    if config.reader.field_order != "auto":
        raise ConfigError(f"--field-order {config.reader.field_order} {NOT_YET}")
