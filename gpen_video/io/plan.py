"""What ``restore`` would do with an input, found before any frame is decoded.

``preflight`` refuses, in one line and before the work starts, what would otherwise fail after it:
a codec the output container cannot hold, encoder options the encoder refuses (DNxHD without a
profile or a CID bit rate, ...), an ffmpeg binary that cannot run the backend's command, too little
free space. ``restore_plan`` is what ``gpen-video probe --plan`` prints: the encode settings and each
stream's action (copy / encode / drop / timecode) with its reason, decided by the same code the
writer runs, on an in-memory file of the output's format.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.config import OutputConfig
from gpen_video.errors import ConfigError, DependencyError, OutputError
from gpen_video.io.encoding import EncodeSettings, frame_rate
from gpen_video.io.ffmpeg_backend import demux_time_base
from gpen_video.io.formats import ContainerCaps
from gpen_video.io.probe import MediaInfo, open_input
from gpen_video.io.side_streams import SideStreams, StreamPlan
from gpen_video.io.writer import check_video_codec, picture_options


@dataclass
class RestorePlan:
    """The encode plan and every other stream's fate, for ``probe --plan`` and the report."""

    output_format: str
    video: EncodeSettings
    streams: list[StreamPlan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = [f"plan: {self.output_format} output, video {self.video.describe()} ({self.video.reason})"]
        for p in self.streams:
            reason = f": {p.reason}" if p.reason else ""
            lines.append(f"  {p.type} #{p.input_index} ({p.codec or 'no codec'}): {p.action}{reason}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return lines


def preflight(
    output: Path, info: MediaInfo, settings: EncodeSettings, caps: ContainerCaps, binary: str | None = None
) -> None:
    """Raise a one-line GpenVideoError now for what would fail later in the run."""
    check_video_codec(caps, settings.codec, output.suffix)
    if binary:
        check_ffmpeg_backend(binary, info, settings)
    else:
        check_encoder_opens(info, settings)
    need = SpaceNeed(output.parent, estimate_output_bytes(info, settings.codec))
    check_free_space(output, [need], "free some space or write elsewhere with -o")


# encoders whose output runs near the input's size when the input is of their family (or at a high fixed rate)
_INTERMEDIATE_OUTPUTS = ("prores_ks", "dnxhd", "ffv1", "huffyuv", "ffvhuff", "utvideo")


@dataclass(frozen=True)
class SpaceNeed:
    """Bytes a run will write into one folder."""

    folder: Path
    size: int


def estimate_output_bytes(info: MediaInfo, codec: str | None) -> int:
    """A generous guess of the restored file's size, for the free-space check; ``codec`` None: the encoder is the
    ffmpeg backend's to choose, not known here."""
    v = info.video
    if codec is None:
        return int(info.size_bytes * 1.5)
    pixels = v.width * v.height * max(v.frame_count, 1)
    if codec in ("rawvideo", "v210"):
        return int(pixels * 3 * v.colour.bit_depth / 8)
    if codec == v.codec or codec in _INTERMEDIATE_OUTPUTS:
        return int(max(info.size_bytes * 1.2, pixels * 0.5))
    return int(max(info.size_bytes * 1.5, pixels * 0.08))  # CRF 16 runs near 0.05 bytes per pixel and frame


def byte_count(size: int) -> str:
    """``size`` bytes in the unit that keeps three significant figures (``512 B``, ``3.10 MB``, ``1.25 TB``)."""
    value, unit = float(size), "B"
    for larger in ("kB", "MB", "GB", "TB", "PB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    decimals = 0 if unit == "B" or value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{decimals}f} {unit}"


def check_free_space(subject: Path, needs: list[SpaceNeed], advice: str, margin: int = 0) -> None:
    """OutputError before the work when a file system cannot take what the run will write on it: the needs of
    folders on one file system add up, and ``margin`` bytes stay free on each. What cannot be measured is let be."""
    by_device: dict[int, SpaceNeed] = {}
    for need in needs:
        try:
            device = os.stat(need.folder).st_dev
        except OSError:
            continue
        held = by_device.get(device)
        by_device[device] = (
            replace(held, size=held.size + need.size) if held else replace(need, size=need.size + margin)
        )
    for need in by_device.values():
        try:
            free = shutil.disk_usage(need.folder).free
        except OSError:
            continue
        if free < need.size:
            raise OutputError(
                f"{subject}: needs about {byte_count(need.size)} free in {need.folder}, only {byte_count(free)}; "
                f"{advice}"
            )


def check_encoder_opens(info: MediaInfo, settings: EncodeSettings) -> None:
    """Open the encoder with the run's settings (no frame encoded): bad options fail here, in one line."""
    v = info.video
    try:
        ctx = av.CodecContext.create(settings.codec, "w")
        ctx.width, ctx.height = v.width, v.height
        ctx.pix_fmt = settings.pix_fmt
        rate = frame_rate(v)
        ctx.time_base = v.time_base if rate is None else 1 / rate
        if rate:
            ctx.framerate = rate
        if settings.bit_rate:
            ctx.bit_rate = settings.bit_rate
        ctx.options = picture_options(settings, v)
        ctx.open()
    except (av.error.FFmpegError, ValueError) as exc:
        hint = ""
        if settings.codec == "dnxhd":
            hint = "; DNxHD needs a profile (dnxhr_lb/sq/hq/hqx/444) or a bit rate that names a CID for the picture"
        raise ConfigError(f"the {settings.codec} encoder refuses {settings.describe()} ({exc}){hint}") from exc


def check_ffmpeg_backend(binary: str, info: MediaInfo, settings: EncodeSettings) -> None:
    """Run the backend's encode options on one black frame through ``binary``: it fails now, not after the run."""
    v = info.video
    cmd = [binary, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
           f"color=c=black:s={v.width}x{v.height}:d=0.1", "-frames:v", "1", "-c:v", settings.codec,
           "-pix_fmt", settings.pix_fmt, "-fps_mode", "passthrough",
           "-enc_time_base", demux_time_base(binary)]  # fmt: skip
    for key, value in settings.options.items():
        cmd += [f"-{key}", str(value)]
    if settings.bit_rate:
        cmd += ["-b:v", str(settings.bit_rate)]
    cmd += ["-f", "null", "-"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DependencyError(f"{binary}: cannot run it ({exc})") from exc
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DependencyError(f"{binary} cannot encode with {settings.describe()}: {last}")


def restore_plan(info: MediaInfo, settings: EncodeSettings, caps: ContainerCaps) -> RestorePlan:
    """The writer's own decisions for ``info``'s streams in a ``caps`` output, made on an in-memory file."""
    plan = RestorePlan(caps.format_name, settings)
    with open_input(info.path) as source, av.open(io.BytesIO(), "w", format=caps.format_name) as trial:
        streams = [s for s in source.streams if s.index != info.video.index]
        side = SideStreams(trial, caps.family, streams, Fraction(0), video=(info.video, settings))
        plan.streams = side.plans
    meta = info.video.metadata
    if meta.is_hdr10 and "master-display" not in settings.options.get("x265-params", ""):
        plan.warnings.append(f"HDR10 metadata left out: {settings.codec} here cannot carry it")
    if meta.chapters and caps.family not in ("matroska", "webm", "mov", "mp4", "nut", "ogg", "ffmetadata"):
        plan.warnings.append(f"{len(meta.chapters)} chapter(s) may be lost: {caps.format_name} may not hold chapters")
    return plan


def plan_for(info: MediaInfo, output: Path, config: OutputConfig) -> RestorePlan:
    """``probe --plan``: the encode settings ``restore`` would choose for ``output``, and every stream's fate."""
    from gpen_video.io.encoding import choose_encoding
    from gpen_video.io.formats import output_caps

    caps = output_caps(output)
    settings = choose_encoding(info.video, config, caps=caps)
    return restore_plan(info, settings, caps)
