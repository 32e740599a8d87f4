"""What a media file holds: streams, codecs, timing, colour, rotation.

``probe`` opens the file read-only, counts the video packets (exact frame count and VFR detection
without decoding) and decodes one frame for the colour tags and display rotation. It is what
``gpen-video probe`` prints and what the reader, writer and codec choice start from.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from gpen_video.errors import InputError
from gpen_video.io.colour import ColourInfo, colour_info, colour_of_frame
from gpen_video.io.metadata import VideoMetadata, video_metadata
from gpen_video.io.rotation import normalize_rotation

log = logging.getLogger(__name__)

# demuxers FFmpeg can turn into "video" that no one means as footage
_NOT_VIDEO_FORMATS = {"tty": "text file", "ass": "subtitle file", "srt": "subtitle file", "webvtt": "subtitle file",
                      "lrc": "lyrics file", "ffmetadata": "metadata file"}  # fmt: skip


@dataclass
class VideoInfo:
    index: int
    codec: str
    profile: str | None
    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None  # average rate; None when unknown
    is_vfr: bool
    frame_count: int
    start_time: float  # seconds
    duration: float  # seconds (last pts + its duration - first pts)
    rotation: int
    colour: ColourInfo
    bit_rate: int | None
    sample_aspect_ratio: Fraction | None
    field_order: str | None
    timecode: str | None
    keyframe_count: int = 0
    metadata: VideoMetadata = field(default_factory=VideoMetadata)  # issue 12: aspect, HDR, chapters


@dataclass
class StreamInfo:
    """A non-video (or extra video) stream: carried to the output by packet copy."""

    index: int
    type: str  # audio | subtitle | data | attachment | video
    codec: str | None
    time_base: Fraction | None
    language: str | None = None
    title: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    layout: str | None = None
    bit_rate: int | None = None
    packets: int = 0
    default: bool = False


@dataclass
class MediaInfo:
    path: Path
    format_name: str
    size_bytes: int
    duration: float | None
    video: VideoInfo
    streams: list[StreamInfo] = field(default_factory=list)
    damaged_packets: int = 0  # packets the demuxer could not read (counted while probing)

    @property
    def audio(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.type == "audio"]

    def to_dict(self) -> dict[str, Any]:
        def convert(value: Any) -> Any:
            if isinstance(value, Fraction):
                return f"{value.numerator}/{value.denominator}"
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            if isinstance(value, list):
                return [convert(v) for v in value]
            return value

        return convert(asdict(self))


def open_input(path: str | Path, **kwargs: Any) -> av.container.InputContainer:
    """Open a media file read-only, or raise InputError with a message naming the file and problem."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a video file (use 'gpen-video batch' for folders)")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        return av.open(str(path), mode="r", **kwargs)
    except av.error.InvalidDataError as exc:
        raise InputError(f"{path}: not a media file FFmpeg can read (invalid data)") from exc
    except av.error.FFmpegError as exc:
        reason = ffmpeg_reason(exc)
        if "moov atom not found" in reason.lower() or "end of file" in reason.lower():
            raise InputError(f"{path}: truncated or unfinished file ({reason}); it cannot be read") from exc
        raise InputError(f"{path}: cannot be opened ({reason})") from exc
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip().rstrip(".")


def probe(path: str | Path) -> MediaInfo:
    """Describe ``path``; raise InputError if it is not a readable video."""
    path = Path(path)
    with open_input(path) as container:
        video_streams = container.streams.video
        if container.format.name in _NOT_VIDEO_FORMATS:
            raise InputError(f"{path}: is a {_NOT_VIDEO_FORMATS[container.format.name]}, not a video")
        if not video_streams:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise InputError(f"{path}: has no video stream ({', '.join(kinds)} only); nothing to restore")
        vstream = _main_video_stream(container)
        first = _first_frame(container, vstream, path)
        info = _describe(container, vstream, first, path)
        info.video.metadata = video_metadata(container, vstream, first)  # issue 12: io/metadata.py
        info.video.field_order = info.video.metadata.field_order  # in words, not FFmpeg's number
    return info


def _main_video_stream(container: av.container.InputContainer) -> av.VideoStream:
    """The first video stream that is not a cover picture."""
    for stream in container.streams.video:
        if not (stream.disposition & av.stream.Disposition.attached_pic):
            return stream
    return container.streams.video[0]


def _first_frame(container: av.container.InputContainer, stream: av.VideoStream, path: Path) -> av.VideoFrame:
    try:
        for packet in container.demux(stream):
            try:
                for frame in packet.decode():
                    return frame
            except av.error.FFmpegError:
                continue
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: no decodable video frame ({ffmpeg_reason(exc)})") from exc
    raise InputError(f"{path}: no decodable video frame")


def _describe(
    container: av.container.InputContainer, vstream: av.VideoStream, first: av.VideoFrame, path: Path
) -> MediaInfo:
    counts: dict[int, int] = {}
    video_pts: list[int] = []
    durations: set[int] = set()
    keyframes = 0
    damaged = 0
    with av.open(str(path)) as scan:
        scan_streams = [scan.streams[s.index] for s in container.streams if s.type in ("video", "audio", "subtitle")]
        try:
            for packet in scan.demux(*scan_streams):
                if packet.size == 0 and packet.pts is None:
                    continue
                counts[packet.stream.index] = counts.get(packet.stream.index, 0) + 1
                if packet.stream.index == vstream.index and packet.pts is not None:
                    video_pts.append(packet.pts)
                    if packet.duration:
                        durations.add(packet.duration)
                    keyframes += int(packet.is_keyframe)
                if packet.is_corrupt:
                    damaged += 1
        except av.error.FFmpegError as exc:
            damaged += 1
            log.warning("%s: demuxing stopped early (%s)", path, ffmpeg_reason(exc))
    video_pts.sort()
    deltas = {b - a for a, b in itertools.pairwise(video_pts)}
    is_vfr = len(deltas) > 1 and (max(deltas) - min(deltas)) > max(1, min(deltas) // 100)
    tb = vstream.time_base or Fraction(1, 1)
    frame_rate = vstream.average_rate or vstream.guessed_rate
    last_duration = min(deltas) if deltas else (next(iter(durations)) if durations else 0)
    duration = float((video_pts[-1] - video_pts[0] + last_duration) * tb) if video_pts else 0.0
    colour = colour_of_frame(first)
    cc = vstream.codec_context
    if colour.matrix_guessed and int(cc.colorspace) not in (0, 2):
        colour = colour_info(first.format.name, first.height, int(cc.colorspace), int(cc.color_range),
                             int(cc.color_primaries), int(cc.color_trc))  # fmt: skip
    video = VideoInfo(
        index=vstream.index,
        codec=cc.name,
        profile=vstream.profile,
        width=cc.width or first.width,
        height=cc.height or first.height,
        time_base=tb,
        frame_rate=Fraction(frame_rate) if frame_rate else None,
        is_vfr=is_vfr,
        frame_count=len(video_pts),
        start_time=float(video_pts[0] * tb) if video_pts else 0.0,
        duration=duration,
        rotation=normalize_rotation(first.rotation),
        colour=colour,
        bit_rate=cc.bit_rate or None,
        sample_aspect_ratio=Fraction(cc.sample_aspect_ratio) if cc.sample_aspect_ratio else None,
        field_order=_field_order(cc),
        timecode=vstream.metadata.get("timecode") or container.metadata.get("timecode"),
        keyframe_count=keyframes,
    )
    streams = [_stream_info(s, counts.get(s.index, 0)) for s in container.streams if s.index != vstream.index]
    duration_s = float(container.duration / av.time_base) if container.duration else None
    return MediaInfo(
        path=path,
        format_name=container.format.name,
        size_bytes=path.stat().st_size,
        duration=duration_s,
        video=video,
        streams=streams,
        damaged_packets=damaged,
    )


def _field_order(cc: Any) -> str | None:
    try:
        order = cc.field_order
    except AttributeError:
        return None
    return None if order in (None, "unknown") else str(order)


def _stream_info(stream: av.stream.Stream, packets: int) -> StreamInfo:
    cc = stream.codec_context
    info = StreamInfo(
        index=stream.index,
        type=stream.type,
        codec=cc.name if cc is not None else None,
        time_base=stream.time_base,
        language=stream.metadata.get("language") or getattr(stream, "language", None),
        title=stream.metadata.get("title"),
        packets=packets,
        default=bool(stream.disposition & av.stream.Disposition.default),
    )
    if stream.type == "audio":
        info.sample_rate = cc.sample_rate
        info.channels = cc.channels
        info.layout = cc.layout.name if cc.layout else None
        info.bit_rate = cc.bit_rate or None
    return info
