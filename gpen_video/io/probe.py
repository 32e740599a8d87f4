"""What a media file holds: streams, codecs, timing, colour, rotation.

``probe`` opens the file read-only, decodes one frame for the colour tags and display rotation and
takes the frame count from the container's own index, so it never reads the file through (a 200 GB
reel on network storage is probed in a second, not in minutes):

- MOV/MP4 and AVI list every sample right after opening (``stream.index_entries``: timestamp,
  key-frame flag, size, position): frame count, key frames and VFR come from it, and an entry whose
  data lies past the end of the file shows a truncated tail (``frame_count_source = "index"``).
- Matroska has cues (key frames or cluster starts only), loaded by a seek; TS, PS, MXF and
  elementary streams have no index. There the frame count is duration × rate
  (``frame_count_source = "estimate"``); the run's one decode establishes the exact count.
- ``exact=True`` (``gpen-video probe --exact``), or a file with neither index nor duration, demuxes
  every packet as before (``frame_count_source = "scan"``).

It is what ``gpen-video probe`` prints and what the reader, writer and codec choice start from.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import numbers
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from gpen_video.errors import InputError
from gpen_video.io.colour import ColourInfo, colour_info, colour_of_frame
from gpen_video.io.containers import CUE_FORMATS
from gpen_video.io.metadata import VideoMetadata, video_metadata
from gpen_video.io.rotation import normalize_rotation

if TYPE_CHECKING:
    from gpen_video.io.field_analysis import FieldCheck

log = logging.getLogger(__name__)

FRAME_COUNT_SOURCES = ("index", "estimate", "scan")

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
    keyframe_count: int = 0  # from an index or scan; with cues: the cue points (a lower bound); else 0
    frame_count_source: str = "scan"  # index | estimate | scan (see FRAME_COUNT_SOURCES)
    metadata: VideoMetadata = field(default_factory=VideoMetadata)  # aspect, field order, HDR, chapters
    # field order measured on the first pictures where the tag does not say it (``io.field_check.check_fields``);
    # None: not looked (``probe`` reads one frame only)
    field_check: FieldCheck | None = None
    stream_id: int | None = None  # the container's id for it (TS PID, PS stream id, track number)


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
    packet_count_source: str = "index"  # index | estimate | scan (as the video's frame count) | none: not known
    default: bool = False
    stream_id: int | None = None  # the container's id for it (TS PID, PS stream id, track number)


@dataclass
class MediaInfo:
    path: Path
    format_name: str
    size_bytes: int
    duration: float | None
    video: VideoInfo
    streams: list[StreamInfo] = field(default_factory=list)
    damaged_packets: int = 0  # packets the demuxer could not read (counted while probing)
    missing_frames: int = 0  # frames the index lists past the end of the file (a truncated tail)

    @property
    def audio(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.type == "audio"]

    def to_dict(self) -> dict[str, Any]:
        def convert(value: Any) -> Any:
            if isinstance(value, numbers.Rational) and not isinstance(value, int):  # Fraction, av 19 AVRational
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


def probe(path: str | Path, exact: bool = False) -> MediaInfo:
    """Describe ``path``; raise InputError if it is not a readable video.

    Reads the container header, the first frame and the index; ``exact`` demuxes every packet instead.
    """
    path = Path(path)
    with open_input(path) as container:
        video_streams = container.streams.video
        if container.format.name in _NOT_VIDEO_FORMATS:
            raise InputError(f"{path}: is a {_NOT_VIDEO_FORMATS[container.format.name]}, not a video")
        if not video_streams:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise InputError(f"{path}: has no video stream ({', '.join(kinds)} only); nothing to restore")
        vstream = _main_video_stream(container)
        first, first_packet = _first_frame(container, vstream, path)
        timing = None if exact else _timing_from_index(container, vstream, first, first_packet, path)
        if timing is None:
            timing = _timing_from_scan(container, vstream, path)
        info = _describe(container, vstream, first, path, timing)
        info.video.metadata = video_metadata(container, vstream, first)
        info.video.field_order = info.video.metadata.field_order  # in words, not FFmpeg's number
    return info


@dataclass
class _Timing:
    """What the index, the estimate or the scan found out about the video stream's frames."""

    source: str  # index | estimate | scan
    frame_count: int
    keyframes: int
    is_vfr: bool
    start_time: float
    duration: float
    packets: dict[int, int] = field(default_factory=dict)  # stream index -> packets (index, scan, or estimated)
    damaged: int = 0
    missing: int = 0


def _timing_from_index(
    container: av.container.InputContainer,
    vstream: av.VideoStream,
    first: av.VideoFrame,
    first_packet: av.Packet,
    path: Path,
) -> _Timing | None:
    """The container's index (MOV/MP4/AVI), or its cues / duration for an estimate; None: a scan is needed."""
    tb = Fraction(vstream.time_base) if vstream.time_base else Fraction(1, 1)  # av 19: AVRational
    if container.format.name.split(",")[0] not in CUE_FORMATS:
        entries = sample_index(vstream, path.stat().st_size)
        if entries is not None:
            shift = reorder_shift(first_packet)
            pts = [t + shift for t in entries.timestamps]
            deltas = {b - a for a, b in itertools.pairwise(pts)}
            last = min(deltas) if deltas else 0
            packets = {vstream.index: len(pts)}
            for stream in container.streams:
                if stream.index != vstream.index and stream.type in ("audio", "subtitle"):
                    packets[stream.index] = len(stream.index_entries)
            if entries.missing:
                log.warning("%s: the file ends %d frame(s) early (truncated); what is there can be restored",
                            path, entries.missing)  # fmt: skip
            return _Timing(
                "index", len(pts), entries.keyframes, _is_vfr(deltas), float(pts[0] * tb),
                float((pts[-1] - pts[0] + last) * tb), packets, missing=entries.missing,
            )  # fmt: skip
    keyframes = 0
    if container.format.name.split(",")[0] in CUE_FORMATS:
        with contextlib.suppress(av.error.FFmpegError):
            container.seek(0, stream=vstream, backward=True)  # loads the cues: key frames / cluster starts
        keyframes = len(vstream.index_entries)
    rate = nominal_rate(vstream)
    start = float(first.pts * tb) if first.pts is not None else 0.0
    if vstream.duration:
        duration = float(vstream.duration * tb)
    elif container.duration:
        container_start = container.start_time / av.time_base if container.start_time is not None else 0.0
        duration = float(container.duration / av.time_base) - max(start - container_start, 0.0)
    else:
        return None
    if not rate or duration <= 0:
        return None
    base = vstream.base_rate
    average = vstream.average_rate
    is_vfr = bool(base and average and rate == average and abs(float(base) - float(average)) > 0.01)
    frames = max(round(duration * float(rate)), 1)
    packets = estimated_packets(container, vstream, Fraction(rate))
    return _Timing("estimate", frames, keyframes, is_vfr, start, duration, packets)


def estimated_packets(
    container: av.container.InputContainer, vstream: av.VideoStream, rate: Fraction
) -> dict[int, int]:
    """The audio streams' packet counts from their durations, where the file has no index: MXF hands PCM out one
    video edit unit a packet (frame- or clip-wrapped alike); a codec of fixed frame size (MP2, AC-3, AAC) one
    frame a packet. Streams neither way are left out (not known without a scan)."""
    packets: dict[int, int] = {}
    mxf = container.format.name.startswith("mxf")
    for stream in container.streams.audio:
        cc = stream.codec_context
        if not stream.duration or not stream.time_base or cc is None:
            continue
        seconds = stream.duration * Fraction(stream.time_base)
        if mxf and cc.name.startswith("pcm_"):
            packets[stream.index] = math.ceil(seconds * rate)
        elif cc.frame_size and cc.sample_rate:
            packets[stream.index] = math.ceil(seconds * cc.sample_rate / cc.frame_size)
    return packets


def nominal_rate(vstream: av.VideoStream) -> Fraction | None:
    """The stream's frame rate: the demuxer's average, unless it is absurd beside the rate FFmpeg guesses from
    the codec and time base (a raw DV stream says 60000 fps for its 25), where the guess is taken."""
    average, guessed = vstream.average_rate, vstream.guessed_rate
    if average and guessed and not guessed / 2 < average < guessed * 2:
        return Fraction(guessed)
    return Fraction(average or guessed) if (average or guessed) else None


@dataclass(frozen=True)
class SampleIndex:
    """The video stream's samples as the container lists them, in decode order (index_entries)."""

    timestamps: list[int]  # decode timestamps of the samples whose data is in the file, sorted
    key_timestamps: list[int]  # those of the key frames
    sizes: list[int]
    missing: int  # samples listed past the end of the file (a truncated tail)

    @property
    def keyframes(self) -> int:
        return len(self.key_timestamps)


def sample_index(stream: av.stream.Stream, file_size: int) -> SampleIndex | None:
    """The per-sample index of ``stream`` (MOV/MP4/AVI), or None if the container has none.

    Reads nothing: the demuxer built it from the header. Cues (Matroska) list key frames only and are
    not a sample index. Entries whose data lies beyond ``file_size`` are counted as missing.
    """
    entries = stream.index_entries
    if len(entries) < 2:
        return None
    timestamps: list[int] = []
    keys: list[int] = []
    sizes: list[int] = []
    missing = 0
    for entry in entries:
        if entry.is_discard or entry.size <= 0:
            continue
        if entry.pos + entry.size > file_size:
            missing += 1
            continue
        timestamps.append(entry.timestamp)
        sizes.append(entry.size)
        if entry.is_keyframe:
            keys.append(entry.timestamp)
    if not timestamps:
        return None
    if not keys or any(b < a for a, b in itertools.pairwise(timestamps)):
        return None  # not a decode-order sample table (or not one we understand): estimate or scan instead
    return SampleIndex(timestamps, keys, sizes, missing)


def reorder_shift(first_packet: av.Packet | None) -> int:
    """Ticks from a sample's decode timestamp (what the index holds) to its presentation time.

    The first packet's pts - dts: the reordering delay (0 without B-frames). Presentation times are
    taken as the decode times shifted by it, which holds for constant-rate streams and for any stream
    without reordering; the decode then gives every frame's own pts.
    """
    if first_packet is None or first_packet.pts is None or first_packet.dts is None:
        return 0
    return int(first_packet.pts - first_packet.dts)


def _is_vfr(deltas: set[int]) -> bool:
    return len(deltas) > 1 and (max(deltas) - min(deltas)) > max(1, min(deltas) // 100)


def _timing_from_scan(container: av.container.InputContainer, vstream: av.VideoStream, path: Path) -> _Timing:
    """Demux every packet (no decode): the exact frame count, key frames, VFR and damaged packets."""
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
    tb = Fraction(vstream.time_base) if vstream.time_base else Fraction(1, 1)  # av 19: AVRational
    last_duration = min(deltas) if deltas else (next(iter(durations)) if durations else 0)
    duration = float((video_pts[-1] - video_pts[0] + last_duration) * tb) if video_pts else 0.0
    start = float(video_pts[0] * tb) if video_pts else 0.0
    return _Timing("scan", len(video_pts), keyframes, _is_vfr(deltas), start, duration, counts, damaged)


def _main_video_stream(container: av.container.InputContainer) -> av.VideoStream:
    """The first video stream that is not a cover picture."""
    for stream in container.streams.video:
        if not (stream.disposition & av.stream.Disposition.attached_pic):
            return stream
    return container.streams.video[0]


def _first_frame(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> tuple[av.VideoFrame, av.Packet | None]:
    """The first decodable frame, and the first packet with timestamps (for the reordering delay)."""
    first_packet: av.Packet | None = None
    try:
        for packet in container.demux(stream):
            if first_packet is None and packet.pts is not None and packet.dts is not None:
                first_packet = packet
            try:
                for frame in packet.decode():
                    return frame, first_packet
            except av.error.FFmpegError:
                continue
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: no decodable video frame ({ffmpeg_reason(exc)})") from exc
    raise InputError(f"{path}: no decodable video frame")


def _describe(
    container: av.container.InputContainer, vstream: av.VideoStream, first: av.VideoFrame, path: Path, timing: _Timing
) -> MediaInfo:
    tb = Fraction(vstream.time_base) if vstream.time_base else Fraction(1, 1)  # av 19: AVRational
    frame_rate = nominal_rate(vstream)
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
        is_vfr=timing.is_vfr,
        frame_count=timing.frame_count,
        start_time=timing.start_time,
        duration=timing.duration,
        rotation=normalize_rotation(first.rotation),
        colour=colour,
        bit_rate=cc.bit_rate or None,
        sample_aspect_ratio=Fraction(cc.sample_aspect_ratio) if cc.sample_aspect_ratio else None,
        field_order=_field_order(cc),
        timecode=vstream.metadata.get("timecode") or container.metadata.get("timecode"),
        keyframe_count=timing.keyframes,
        frame_count_source=timing.source,
        stream_id=vstream.id,
    )
    streams = [_stream_info(s, timing.packets.get(s.index, 0)) for s in container.streams if s.index != vstream.index]
    for stream in streams:  # an attachment is in the header: no packets, exactly
        known = stream.index in timing.packets
        stream.packet_count_source = timing.source if known else "index" if stream.type == "attachment" else "none"
    duration_s = float(container.duration / av.time_base) if container.duration else None
    return MediaInfo(
        path=path,
        format_name=container.format.name,
        size_bytes=path.stat().st_size,
        duration=duration_s,
        video=video,
        streams=streams,
        damaged_packets=timing.damaged,
        missing_frames=timing.missing,
    )


def frame_count_warnings(info: MediaInfo, decoded: int) -> list[str]:
    """What a whole-file decode of ``decoded`` frames says about the input, against what probing found.

    The index shows a truncated tail before any decode (``missing_frames``); where the count is an
    estimate (no index), a decode that ends well short of the container's duration shows it.
    """
    warnings = []
    if info.missing_frames:
        warnings.append(f"the input is truncated: its index lists {info.missing_frames} frame(s) past its end")
    expected = info.video.frame_count
    if info.video.frame_count_source == "estimate" and decoded < expected - max(2, expected // 100):
        warnings.append(f"the input holds {decoded} frames where its duration implies about {expected}; "
                        "it may be truncated or damaged")  # fmt: skip
    return warnings


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
        time_base=Fraction(stream.time_base) if stream.time_base else None,
        language=stream.metadata.get("language") or getattr(stream, "language", None),
        title=stream.metadata.get("title"),
        packets=packets,
        default=bool(stream.disposition & av.stream.Disposition.default),
        stream_id=stream.id,
    )
    if stream.type == "audio":
        info.sample_rate = cc.sample_rate
        info.channels = cc.channels
        info.layout = cc.layout.name if cc.layout else None
        info.bit_rate = cc.bit_rate or None
    return info
