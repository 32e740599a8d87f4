"""What an output container can hold, asked of FFmpeg through PyAV rather than kept in tables.

``container_caps`` opens the muxer on an in-memory file once per format name and asks it:
``OutputContainer.supported_codecs`` (FFmpeg's ``avformat_query_codec``, the same query behind
``add_stream_from_template``) and the muxer's default video, audio and subtitle codecs. A codec the
muxer does not know either way (``query_codec`` has no answer, e.g. MPEG-TS) counts as holdable
when PyAV's ``add_stream`` accepts it, which is the same test the real output will pass or fail.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import av

from gpen_video.errors import OutputError
from gpen_video.io.containers import NO_REORDER_FAMILIES


@dataclass(frozen=True)
class ContainerCaps:
    """One muxer's answers: the codecs it holds and the ones it would pick itself."""

    format_name: str
    supported: frozenset[str]  # codec implementation names (encoders and decoders) FFmpeg says it holds
    default_video: str
    default_audio: str
    default_subtitle: str

    @property
    def family(self) -> str:
        return container_family(self.format_name)

    def holds(self, codec: str) -> bool:
        """True when FFmpeg says yes, or when it does not know and ``add_stream`` accepts the encoder."""
        if codec in self.supported:
            return True
        return _accepted_by_add_stream(self.format_name, codec)

    @property
    def reorders(self) -> bool:
        """Whether B-frames (presentation order unlike decode order) are timed correctly in this container."""
        return self.family not in NO_REORDER_FAMILIES


def container_family(format_name: str) -> str:
    """FFmpeg muxer or demuxer name (``mov,mp4,m4a,...``, ``ipod``) -> one short family name."""
    name = format_name.split(",")[0]
    return {"ipod": "mp4", "m4v": "mp4", "3gp": "mp4", "3g2": "mp4", "psp": "mp4"}.get(name, name)


@functools.lru_cache(maxsize=64)
def container_caps(format_name: str) -> ContainerCaps:
    try:
        with av.open(io.BytesIO(), "w", format=format_name) as probe:
            return ContainerCaps(
                format_name=probe.format.name,
                supported=frozenset(probe.supported_codecs),
                default_video=probe.default_video_codec,
                default_audio=probe.default_audio_codec,
                default_subtitle=probe.default_subtitle_codec,
            )
    except (av.error.FFmpegError, ValueError) as exc:
        raise OutputError(f"FFmpeg has no '{format_name}' muxer ({exc})") from exc


@functools.lru_cache(maxsize=256)
def _accepted_by_add_stream(format_name: str, codec: str) -> bool:
    try:
        with av.open(io.BytesIO(), "w", format=format_name) as probe:
            probe.add_stream(codec)
    except (av.error.FFmpegError, ValueError, TypeError):
        return False
    return True


@functools.lru_cache(maxsize=64)
def muxer_for_extension(extension: str) -> str | None:
    """The muxer FFmpeg picks for a file extension (``.mkv`` -> ``matroska``), from the muxers' own lists."""
    ext = extension.lower().lstrip(".")
    if not ext:
        return None
    names = sorted(av.formats_available)
    candidates = []
    for name in names:
        try:
            fmt = av.format.ContainerFormat(name, "w")
        except (ValueError, av.error.FFmpegError):
            continue
        if ext in (fmt.extensions or set()):
            candidates.append(name)
    if not candidates:
        return None
    # FFmpeg's av_guess_format prefers a muxer named like the extension, then the first registered one
    for preferred in (ext, {"mkv": "matroska", "mpg": "mpeg", "ts": "mpegts", "m2ts": "mpegts"}.get(ext, "")):
        if preferred in candidates:
            return preferred
    return candidates[0]


def output_caps(path: Path, output_format: str | None = None) -> ContainerCaps:
    """What the output at ``path`` (or the named muxer) can hold; OutputError for an unknown extension."""
    name = output_format or muxer_for_extension(path.suffix)
    if name is None:
        raise OutputError(f"{path}: FFmpeg has no muxer for '{path.suffix}'; use .mov, .mp4, .mkv, .mxf, ...")
    return container_caps(name)
