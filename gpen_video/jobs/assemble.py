"""Join a file's restored segments into the final output, then remux the input's other streams once.

Segment files (NUT, video only, at the source timestamps) are stream-copied in order into one video
stream, so nothing is re-encoded and every timestamp stays exactly the source's (VFR included). The
input's audio, subtitle and data streams are copied from the input itself, interleaved by time. The
result is written under a temporary name, checked frame by frame against the segments' timestamps
and only then renamed into place.

Each segment file is read once, here: a segment is not read back when it is written. Its packets are checked
as they go by against what its writer wrote (``SegmentCheck``: the frame count and a digest of the pts), none
damaged, decode times increasing, and its first and last GOP are decoded from the packets in hand. A segment
that fails is ``SegmentDamaged``: the runner forgets it, so the next run restores it anew.

The segments (NUT) keep neither the field order tag nor, for Matroska, a pixel aspect the muxer reads: the output
stream is tagged with the output's (``video_out``: its field order, its pixel aspect), the frames' own field flags
come through the copy untouched. Where the muxer still leaves the aspect out (Matroska: PyAV sets no stream
aspect), one stream copy through the ffmpeg CLI with ``-aspect`` sets it (``io.container_keeps.remux_with_aspect``:
one more read and write of the output, not of the segments), before the output is verified; then its field order
is read back from its tag and its first frames' flags (``io.field_check.check_written_fields``).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import heapq
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.errors import DependencyError, OutputError, VerificationError
from gpen_video.io import writer as _writer
from gpen_video.io.container_keeps import remux_with_aspect
from gpen_video.io.containers import ASSEMBLED_SIDE_TYPES, UNINDEXED_FORMATS
from gpen_video.io.ffmpeg_backend import find_ffmpeg, source_sar
from gpen_video.io.field_analysis import CODEC_FIELD_ORDER
from gpen_video.io.field_check import check_written_fields
from gpen_video.io.formats import container_family
from gpen_video.io.light_open import open_probed
from gpen_video.io.output import VideoPackets, atomic_output, verify_video
from gpen_video.io.probe import MediaInfo, VideoInfo, ffmpeg_reason
from gpen_video.io.side_packets import read_side_file
from gpen_video.io.side_router import PacketRange
from gpen_video.io.side_streams import SideStreams, StreamPlan, copy_stream

log = logging.getLogger(__name__)

_SKIP_CONTAINER_METADATA = ("encoder", "major_brand", "minor_version", "compatible_brands")

# The side streams are read alone, sample by sample where the container has an index (MOV/MP4: a PCM or AAC
# chunk of a few kB between the video samples). Each read fills FFmpeg's read buffer (32 kB), so most of it
# would be the video next to the chunk: 0.27x of a 320x180 rawvideo MOV read for 0.048x of audio. Reads of at
# most 4 kB (the file protocol's ``blocksize``; ``buffer_size`` where the input is a Python file object, as
# in the read-counting tests and bench) read 0.064x. Containers without an index are read through either way.
SIDE_READ_BLOCK = 4096
SIDE_READ_OPTIONS = {"container_options": {"blocksize": str(SIDE_READ_BLOCK)}, "buffer_size": SIDE_READ_BLOCK}


# codecs whose packets a muxer may rewrap (Annex B <-> length-prefixed, OBU headers): their sizes in the output
# are not the sizes muxed, so only the others' are compared
_REWRAPPED_CODECS = ("h264", "hevc", "vvc", "av1")


@dataclass(frozen=True)
class SegmentCheck:
    """What a segment's writer wrote, which its file's packets must show: the frame count and the digest of the
    source pts (``pts_digest``; "" where not known: a segment recorded by a run that read it back on writing)."""

    frames: int
    pts_digest: str = ""


class SegmentDamaged(VerificationError):
    """A segment file does not hold what its writer wrote (``index``: which segment)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def pts_digest(pts: Iterable[int]) -> str:
    """A digest of a set of timestamps (in presentation order, whatever order they come in)."""
    digest = hashlib.sha256()
    for value in sorted(pts):
        digest.update(b"%d," % value)
    return digest.hexdigest()[:32]


@dataclass
class AssembleResult:
    frames: int
    pts: list[int]  # video pts written, in the source time base, in presentation order
    streams: list[StreamPlan] = field(default_factory=list)


def assemble(
    info: MediaInfo,
    segment_files: list[Path],
    starts: list[int],
    output: Path,
    durations: dict[int, int] | None = None,
    frame_pts: list[int] | None = None,
    side_files: list[Path] | None = None,
    checks: list[SegmentCheck] | None = None,
    video_out: VideoInfo | None = None,
) -> AssembleResult:
    """Write ``output`` from ``segment_files`` (in order; the first frame of each at ``starts``, source
    pts) plus the side streams of ``info.path``. ``durations`` (source pts -> ticks) gives each frame the
    source packet's duration, so the last frame and the stream length come out as the source's;
    ``frame_pts`` (the source's sorted pts) lets missing decode timestamps be rebuilt as the encoder made
    them. ``side_files`` (one per segment, in order) hold the side streams' packets, each segment's share:
    then the input is opened for its stream headers only, not read again. ``checks`` (one per segment): what each
    segment's writer wrote, which its packets must show (none: the frame count and digest are not checked).
    ``video_out``: the output stream as the segments were written (``run.field_order.output_info``: its field order
    and pixel aspect; the input's where not given)."""
    video_out = video_out or info.video
    if not segment_files:
        raise OutputError(f"{output}: no segments to assemble")
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_probed(info.path, info, **SIDE_READ_OPTIONS))
        first = stack.enter_context(_open_segment(segment_files[0], 0))  # read once: its packets come from it too
        side_in = [s for s in source.streams if s.index != info.video.index and s.type in ASSEMBLED_SIDE_TYPES]
        with atomic_output(output) as temp:
            try:
                out = av.open(str(temp), "w")
            except (av.error.FFmpegError, ValueError) as exc:
                raise OutputError(f"{output}: cannot create the output ({exc}); check the extension") from exc
            try:
                video = _add_video_stream(out, first.streams.video[0], info, video_out)
                side = SideStreams(out, container_family(out.format.name), side_in, Fraction(0))
                for key, value in source.metadata.items():
                    if key.lower() not in _SKIP_CONTAINER_METADATA:
                        out.metadata[key] = value
                timing = _Timing(durations or {}, sorted(frame_pts or []), _frame_ticks(info, durations or {}))
                videos = _video_packets(segment_files, starts, info.video.time_base, timing, checks, first)
                unusable = None if side_files is None else _side_files_unusable(info, side_files, side_in)
                if unusable:
                    log.info("%s: %s; its side streams are copied from the input instead", info.path, unusable)
                if side_files is None or unusable:
                    side_packets = _side_packets(source, side_in)
                else:
                    side_packets = _side_files(side_files, {s.index: s for s in side_in})
                written, sizes = _mux(out, video, side, videos, side_packets)
                side.flush()
            finally:
                out.close()
            aspect_missing = _aspect_missing(temp, video_out)
            if aspect_missing is not None:
                remux_with_aspect(temp, aspect_missing, video_out.width, video_out.height, _ffmpeg_for(output))
            tb = info.video.time_base
            # the output is checked against the packets just muxed: from its sample table where it has one (an
            # intra stream in MOV/MP4: nothing read but its header and both ends), else from its packets
            verify_video(temp, written, tb, sizes=None if video.codec_context.name in _REWRAPPED_CODECS else sizes)
            check_written_fields(temp, CODEC_FIELD_ORDER.get(video_out.metadata.field_order_id, "unknown"))
    return AssembleResult(len(written), sorted(written), side.plans)


def _add_video_stream(
    out: av.container.OutputContainer, template: av.VideoStream, info: MediaInfo, video_out: VideoInfo
) -> av.VideoStream:
    """A stream-copy video stream with the source's timing, rotation, timecode and colour tags, and the output's
    pixel aspect and interlaced field order (NUT segments keep no field order tag)."""
    v = info.video
    stream = copy_stream(out, template)
    stream.time_base = v.time_base
    if v.frame_rate:
        # The segment files' template (NUT) carries a frame rate guessed from their 1/1000-like time base;
        # PyAV 18 has no stream.average_rate setter (it raised AttributeError, silently suppressed), and the
        # muxer takes the stream's rate from the codec context's: without this an MKV said 1000 fps.
        stream.codec_context.framerate = v.frame_rate
    _writer.tag_video_stream(stream, video_out)
    order_id = video_out.metadata.field_order_id
    if order_id and stream.codec_context is not None:  # progressive, tt, bb, tb, bt
        stream.codec_context.field_order = order_id
    return stream


def _aspect_missing(path: Path, video_out: VideoInfo) -> Fraction | None:
    """The output's pixel aspect where the written file does not carry it (Matroska: PyAV sets no stream aspect)."""
    sar = source_sar(video_out)
    if sar == 1:
        return None
    with av.open(str(path)) as written:
        got = written.streams.video[0].sample_aspect_ratio
    return None if got and Fraction(got) == sar else sar


def _ffmpeg_for(output: Path) -> str:
    try:
        return find_ffmpeg()
    except DependencyError as exc:
        raise OutputError(f"{output.name}: its pixel aspect needs an ffmpeg binary to be set; install ffmpeg") from exc


def _frame_ticks(info: MediaInfo, durations: dict[int, int]) -> int:
    """The usual frame duration in source ticks (what an encoder spaces its first decode timestamps by)."""
    if durations:
        values = sorted(durations.values())
        return max(values[len(values) // 2], 1)
    rate = info.video.frame_rate
    return max(round(1 / (rate * info.video.time_base)), 1) if rate else 1


@dataclass
class _Timing:
    """The source's frame timing, for what NUT segment files do not keep (durations, early dts)."""

    durations: dict[int, int]
    frame_pts: list[int]
    step: int

    def early_dts(self, start: int, known_dts: int, count: int) -> list[int]:
        """Decode timestamps of a segment's first ``count`` packets, the ``known_dts`` one's predecessors.

        An encoder with ``count`` frames of reordering delay gives its n-th packet the n-th smallest pts
        minus the span of the first ``count`` frames; the segment's frames are the source's from ``start``.
        """
        i = bisect.bisect_left(self.frame_pts, start)
        window = self.frame_pts[i : i + count + 1]
        if len(window) == count + 1 and window[0] == start:
            delay = window[count] - window[0]
            return [min(window[j] - delay, known_dts - (count - j)) for j in range(count)]
        return [known_dts - (count - j) * self.step for j in range(count)]


def _open_segment(path: Path, number: int) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        raise SegmentDamaged(number, f"segment {number}: {path.name} cannot be read ({ffmpeg_reason(exc)})") from exc


def _video_packets(
    files: list[Path],
    starts: list[int],
    source_tb: Fraction,
    timing: _Timing,
    checks: list[SegmentCheck] | None,
    first: av.container.InputContainer,
) -> Iterator[tuple[bool, av.Packet]]:
    """Every segment's video packets in order, with pts and dts in source time-base ticks, each segment checked
    as it is read (``_segment_packets``); ``first``: the first segment, already open."""
    for number, (path, start) in enumerate(zip(files, starts, strict=True)):
        check = checks[number] if checks is not None else None
        try:
            container = first if number == 0 else _open_segment(path, number)
            yield from _segment_packets(container, path, start, source_tb, timing, check)
        except VerificationError as exc:
            if isinstance(exc, SegmentDamaged):
                raise
            raise SegmentDamaged(number, f"segment {number}: {exc}") from exc
        except av.error.FFmpegError as exc:
            reason = ffmpeg_reason(exc)
            raise SegmentDamaged(number, f"segment {number}: {path.name} cannot be read ({reason})") from exc


def _segment_packets(
    container: av.container.InputContainer,
    path: Path,
    start: int,
    source_tb: Fraction,
    timing: _Timing,
    check: SegmentCheck | None,
) -> Iterator[tuple[bool, av.Packet]]:
    """One segment's video packets, with pts and dts in source time-base ticks; then its checks.

    A muxer may have shifted a segment's timeline (NUT moves it so that no dts is negative, by the
    B-frame delay); the first packet of a segment is its key frame at ``start``, which gives the
    shift to undo. NUT stores no dts for the first packets of a B-frame stream: those get dts one frame
    (``step`` ticks) apart below the first known one, as the encoder had them (MP4/MOV store decode
    durations); ``_Retimer`` keeps dts increasing across segments; presentation times never change.
    """
    seen = VideoPackets(path.name)
    with container:
        stream = container.streams.video[0]
        tb = stream.time_base
        shift: Fraction | None = None
        waiting: list[av.Packet] = []  # packets before the first known dts
        source_pts: list[int] = []
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            seen.add(packet)
            if shift is None:
                shift = packet.pts * tb - start * source_tb
            packet.pts = _ticks(packet.pts * tb - shift, source_tb, path)
            source_pts.append(packet.pts)
            if packet.dts is not None:
                packet.dts = math.floor((packet.dts * tb - shift) / source_tb)
            packet.time_base = source_tb
            if packet.pts in timing.durations:
                packet.duration = timing.durations[packet.pts]
            if packet.dts is None:
                waiting.append(packet)
                continue
            for early, dts in zip(waiting, timing.early_dts(start, packet.dts, len(waiting)), strict=True):
                early.dts = dts
            yield from ((True, ready) for ready in [*waiting, packet])
            waiting = []
        for j, early in enumerate(waiting):  # a segment of a few frames: no dts known at all
            early.dts = waiting[0].pts - (len(waiting) - j) * timing.step
            yield True, early
        _check_segment(path, source_pts, check)
        seen.check_ends(stream.codec_context)


def _check_segment(path: Path, source_pts: list[int], check: SegmentCheck | None) -> None:
    """The segment's packets against what its writer wrote: as many frames, at the same times."""
    if check is None:
        return
    if len(source_pts) != check.frames:
        raise VerificationError(f"{path.name} holds {len(source_pts)} frames where {check.frames} were written")
    if check.pts_digest and pts_digest(source_pts) != check.pts_digest:
        raise VerificationError(f"{path.name}: its frames' timestamps are not the ones written")


def _ticks(seconds: Fraction, tb: Fraction, path: Path) -> int:
    ticks = seconds / tb
    if ticks.denominator != 1:
        raise VerificationError(f"{path.name}: a timestamp is off the source's time base; the segment is unusable")
    return int(ticks)


class _Retimer:
    """Moves video packets to the output stream's time base with strictly increasing dts <= pts."""

    def __init__(self, stream: av.VideoStream) -> None:
        self.stream = stream
        self.last_dts: int | None = None

    def __call__(self, packet: av.Packet) -> int:
        """Retime ``packet`` for the output; returns its pts in its original (source) ticks."""
        source_pts = packet.pts
        tb, out_tb = packet.time_base, self.stream.time_base
        pts = _rescale(packet.pts, tb, out_tb)
        dts = _rescale(packet.dts, tb, out_tb)
        if packet.duration:
            packet.duration = _rescale(packet.duration, tb, out_tb)
        if self.last_dts is not None and dts <= self.last_dts:
            dts = self.last_dts + 1
        dts = min(dts, pts)
        self.last_dts = dts
        packet.pts, packet.dts = pts, dts
        packet.time_base = out_tb
        packet.stream = self.stream
        return source_pts


def _rescale(ticks: int, tb: Fraction, out_tb: Fraction) -> int:
    """``ticks`` from ``tb`` to ``out_tb`` rounded as FFmpeg's av_rescale_q does (half away from zero)."""
    value = ticks * tb / out_tb
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def _side_packets(
    source: av.container.InputContainer, streams: list[av.stream.Stream]
) -> Iterator[tuple[bool, av.Packet]]:
    if not streams:
        return
    wanted = {s.index for s in streams}
    for stream in source.streams:  # demux() alone still reads them: the video would be read a second time
        if stream.index not in wanted:
            stream.discard = av.stream.Discard.all
    whole = PacketRange(None, None, Fraction(0))
    try:
        for packet in source.demux(*streams):
            if packet.size and whole.keeps(packet):
                yield False, packet
    except av.error.FFmpegError as exc:  # damaged tail: what was read is kept, as the restore path does
        log.warning("%s: side streams end early (%s)", source.name, ffmpeg_reason(exc))


def _side_files_unusable(info: MediaInfo, files: list[Path], side_in: list[av.stream.Stream]) -> str | None:
    """Why the segments' side files may miss packets, or None. A TS/PS segment's read starts at (or a seek before)
    its key frame, its warm-up before its span: subtitles or data muxed earlier than that cannot be told missing;
    audio can (a gap)."""
    if info.format_name in UNINDEXED_FORMATS and any(s.type != "audio" for s in side_in):
        return "subtitles or data in a container without an index (their packets at the seams cannot be checked)"
    return _audio_gap(files, {s.index: s for s in side_in})


def _audio_gap(files: list[Path], streams: dict[int, av.stream.Stream]) -> str | None:
    """Where an audio stream's packets in consecutive side files leave a gap at a seam (packets of a segment's
    span muxed before its read began would be lost), what is missing; None where every seam is contiguous."""
    ends: dict[int, Fraction] = {}
    for number, path in enumerate(files):
        seen: set[int] = set()
        for packet in read_side_file(path, streams):
            if packet.stream.type != "audio" or packet.pts is None or not packet.time_base:
                continue
            index, start = packet.stream.index, packet.pts * packet.time_base
            length = packet.duration * packet.time_base
            if index not in seen and index in ends and start - ends[index] > length / 2:
                return f"audio stream #{index} has a {float(start - ends[index]):.3f} s gap before segment {number}"
            seen.add(index)
            ends[index] = start + length
    return None


def _side_files(files: list[Path], streams: dict[int, av.stream.Stream]) -> Iterator[tuple[bool, av.Packet]]:
    for path in files:
        for packet in read_side_file(path, streams):
            yield False, packet


def _time(item: tuple[bool, av.Packet]) -> float:
    packet = item[1]
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None and packet.time_base else 0.0


def _mux(
    out: av.container.OutputContainer,
    video: av.VideoStream,
    side: SideStreams,
    video_packets: Iterator[tuple[bool, av.Packet]],
    side_packets: Iterator[tuple[bool, av.Packet]],
) -> tuple[list[int], list[int]]:
    """Interleave by time; returns the video pts written (source time base) and the packets' sizes (decode order)."""
    out.start_encoding()  # the muxer fixes its time bases here
    retime = _Retimer(video)
    written: list[int] = []
    sizes: list[int] = []
    for is_video, packet in heapq.merge(video_packets, side_packets, key=_time):
        if is_video:
            written.append(retime(packet))
            sizes.append(packet.size)
            out.mux(packet)
        else:
            side.write([packet])
    return written, sizes
