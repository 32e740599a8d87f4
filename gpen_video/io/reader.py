"""Streaming decode of the main video stream, keeping source timestamps and the other streams' packets.

One demux pass over the file: video packets are decoded (threaded) into ``Frame`` objects that keep
the decoded samples, ``pts`` and ``time_base`` exactly as the source had them (VFR stays VFR); every
other stream's packets are kept, untouched, for the writer to copy. Damaged packets are counted and
skipped, so a scratched tape still yields every frame that can be decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from gpen_video.config import ReaderConfig
from gpen_video.errors import DamagedInputError, InputError
from gpen_video.io.colour import ColourInfo, to_working
from gpen_video.io.containers import ASSEMBLED_SIDE_TYPES, BYTE_START_FORMATS, PTS_DURATION_FORMATS, UNINDEXED_FORMATS
from gpen_video.io.probe import MediaInfo, ffmpeg_reason, nominal_rate, open_input
from gpen_video.io.side_packets import SideFileWriter

log = logging.getLogger(__name__)

SEEK_BACKOFF = Fraction(1)  # seconds: the back-off on UNINDEXED_FORMATS after a first miss; doubled while it misses
# The first seek on those goes only this many frames early (a key frame's decode time precedes its presentation by
# the B-frame delay): a start on a key frame (a batch segment's, planned on one) then reads no packet before it. A
# start inside a GOP misses (the first frame decoded is the next key frame, read up to) and backs off SEEK_BACKOFF.
SEEK_LEAD_FRAMES = 4


# Bytes before the key frame's packet that an open of a BYTE_START_FORMATS file starts at (TS and PS alike; in a TS
# the partial packets there are dropped): a PS's MPEG video parser that starts on the key frame's own start code
# gives its picture the next packet's timestamp; started in the packet before, it is in step.
BYTE_START_LEAD = 8192
# ... and the earliest its first key frame may be, before the start (seconds): a lead of 8 kB holds a few frames.
# Earlier means another reading of the timestamps: FFmpeg corrects a TS's 33-bit wrap from the first it reads, so
# a file that crosses the wrap, opened past it, is 2^33 ticks (26.5 hours) off.
BYTE_START_SLACK = 5


def first_seek_margin(frame_rate: float | None) -> Fraction:
    """Seconds before the start that the first seek aims at, on a demuxer without an index."""
    return SEEK_LEAD_FRAMES / Fraction(frame_rate or 25).limit_denominator(10**6)


# A file whose media info is known (probed once per job) need not have a TS or PS file's duration estimated
# again on every open: FFmpeg reads the last 250 kB of the file for it (estimate_timings_from_pts), ten times
# over for ten segments. Only mpeg and mpegts estimate it so; ``truncation`` needs it there (a TS cut before
# its last packets ends before its pts-estimated duration), so a whole-file decode still opens with it.
PROBED_INPUT_OPTIONS = {"skip_estimate_duration_from_pts": "1"}


# FFmpeg's stream analysis (avformat_find_stream_info) reads on, after every stream's parameters are known, to
# 20 frames of video (``fpsprobesize``) to estimate the frame rate: half of a TS open's reads (0.39 MB at 4 Mbit/s,
# on every segment's open). A probed file's rate is known, so an open given its media info skips that estimate,
# then checks that the streams say what the probe found (``analysis_differs``) and opens again with the full
# analysis where anything differs.
LIGHT_ANALYSIS_OPTIONS = {"fpsprobesize": "0"}


def open_probed(path: str | Path, info: MediaInfo | None = None, **kwargs: Any) -> av.container.InputContainer:
    """``open_input`` for a file already probed (its duration is in the media info; with ``info``, its streams)."""
    options = {**PROBED_INPUT_OPTIONS, **kwargs.pop("container_options", {})}
    if info is None:
        return open_input(path, container_options=options, **kwargs)
    container = open_input(path, container_options={**options, **LIGHT_ANALYSIS_OPTIONS}, **kwargs)
    differs = analysis_differs(container, info)
    if differs is None:
        return container
    log.debug("%s: %s after the light stream analysis; opening it again with the full one", path, differs)
    container.close()
    return open_input(path, container_options=options, **kwargs)


def open_at_byte(path: Path, info: MediaInfo, position: int) -> av.container.InputContainer | None:
    """``path`` opened BYTE_START_LEAD before ``position`` (the format named: probing it would read the file's start),
    or None where nothing can be opened there or its streams there are not the probe's: a PS numbers its streams in
    the order it meets them, a TS the streams of a program whose table comes later, so an open in mid-file can give
    another stream another's index."""
    options = {**PROBED_INPUT_OPTIONS, **LIGHT_ANALYSIS_OPTIONS,
               "skip_initial_bytes": str(max(position - BYTE_START_LEAD, 0))}  # fmt: skip
    try:
        container = open_input(path, format=info.format_name, container_options=options)
    except InputError as exc:
        log.debug("%s: cannot open it at byte %d (%s)", path, position, exc)
        return None
    differs = analysis_differs(container, info)
    if differs is None:
        return container
    log.debug("%s: opened at byte %d, %s", path, position, differs)
    container.close()
    return None


def analysis_differs(container: av.container.InputContainer, info: MediaInfo) -> str | None:
    """What the opened streams say unlike the probe (the parameters a run uses, and each index's stream id), or
    None where nothing differs."""
    others = {s.index: s for s in info.streams}
    if len(container.streams) != len(others) + 1:
        return f"{len(container.streams)} streams where the probe found {len(others) + 1}"
    for stream in container.streams:
        cc = stream.codec_context
        probed = others.get(stream.index)
        want_id = info.video.stream_id if stream.index == info.video.index else probed and probed.stream_id
        if want_id is not None and stream.id != want_id:
            return f"stream {stream.index} has id {stream.id:#x} where the probe found {want_id:#x}"
        if stream.index == info.video.index:
            if stream.type != "video":
                return f"stream {stream.index} is {stream.type} where the probe found the video"
            video = info.video
            rate = nominal_rate(stream)
            # without the estimate, the rate of a codec that counts fields (MPEG-2, H.264) is guessed as the field rate
            if rate and video.frame_rate and rate == 2 * Fraction(video.frame_rate).limit_denominator(10**6):
                rate = video.frame_rate
            seen = (stream.type, cc.name, cc.width, cc.height, Fraction(stream.time_base), rate)
            want = ("video", video.codec, video.width, video.height, Fraction(video.time_base), video.frame_rate)
            if seen != want or cc.pix_fmt is None:
                return f"video {seen} (pixel format {cc.pix_fmt}) where the probe found {want}"
            continue
        other = others.get(stream.index)
        if other is None or stream.type != other.type or (cc.name if cc is not None else None) != other.codec:
            return f"stream {stream.index} is {stream.type} {cc.name if cc is not None else None}"
        if stream.type == "audio":
            seen_audio = (cc.sample_rate, cc.channels, cc.layout.name if cc.layout else None, cc.format is not None)
            want_audio = (other.sample_rate, other.channels, other.layout, True)
            if seen_audio != want_audio:
                return f"audio stream {stream.index}: {seen_audio} where the probe found {want_audio}"
    return None


SIDE_SLACK = 2  # seconds of file past a range's end that side packets due before it may still come in


@dataclass
class _SideEnd:
    """Whether a range's side packets are all in once its video is: audio comes in time order, so once every
    audio stream has had a packet at or past ``end`` the rest are later; subtitles and data may come any time,
    so where there are any, SIDE_SLACK seconds of file are read past ``end``."""

    end: Fraction | None  # None: to the end of the file
    audio: set[int]
    sparse: bool  # subtitles or data among the side streams
    passed: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, end: Fraction | None, streams: list[av.stream.Stream]) -> _SideEnd:
        return cls(end, {s.index for s in streams if s.type == "audio"}, any(s.type != "audio" for s in streams))

    def note(self, packet: av.Packet, t: Fraction | None) -> None:
        if self.end is not None and t is not None and t >= self.end and packet.stream.index in self.audio:
            self.passed.add(packet.stream.index)

    def reached(self, packet: av.Packet) -> bool:
        """Every side packet of the range is in (the video is done; ``packet`` is the last demuxed)."""
        if self.end is None:
            return False
        t = presentation_time(packet)
        self.note(packet, t)
        if not self.sparse and self.passed >= self.audio:
            return True
        return t is not None and t >= self.end + SIDE_SLACK


@dataclass
class _Diversion:
    """A batch segment's side packets: those with a time in ``[start, end)`` seconds go to ``file``."""

    file: SideFileWriter
    start: Fraction | None  # None: from the file's start (the first segment also owns what precedes its video)
    side_end: _SideEnd  # its end, and when every side packet up to it is in

    def owns(self, packet: av.Packet) -> bool:
        t = presentation_time(packet)
        self.side_end.note(packet, t)
        if t is None:
            return self.start is None
        end = self.side_end.end
        return (end is None or t < end) and (self.start is None or t >= self.start)


def presentation_time(packet: av.Packet) -> Fraction | None:
    """When a packet is shown, in seconds (its decode time without a pts); None without either, or a time base.
    (``side_packets.packet_time`` orders by decode time instead.)"""
    ts = packet.pts if packet.pts is not None else packet.dts
    return None if ts is None or packet.time_base is None else ts * packet.time_base


class _SeekMissedStart(Exception):
    """A seek landed past the last key frame at or before the range's start."""


@dataclass
class Frame:
    """One decoded picture, in presentation order, with its source timing."""

    index: int  # 0-based position among the frames this run processes
    pts: int  # source presentation timestamp, in time_base units
    time_base: Fraction
    source: av.VideoFrame  # the decoded samples, re-encoded as they are when no face is touched

    @property
    def time(self) -> float:
        return float(self.pts * self.time_base)

    def upright(self, colour: ColourInfo, rotation: int) -> np.ndarray:
        """The picture as a player shows it, BGR in the working bit depth."""
        return to_working(self.source, colour, rotation)


@dataclass(frozen=True)
class PacketRange:
    """Which side-stream packets belong to a run: all of them, or those inside ``[offset, end)``.

    ``offset`` is the time of the first video frame kept; the output timeline starts there.
    """

    start: float | None
    end: Fraction | None
    offset: Fraction

    def keeps(self, packet: av.Packet) -> bool:
        t = presentation_time(packet)
        if t is None:
            return self.start is None
        if self.end is not None and t >= self.end:
            return False
        return self.start is None or t >= self.offset  # whole file: priming packets (pts < 0) included


@dataclass
class ReadStats:
    frames: int = 0  # frames handed on (inside the range)
    decoded: int = 0  # every frame decoded, pre-roll from the seek point included
    damaged_packets: int = 0
    corrupt_frames: int = 0
    first_error: str | None = None
    repeated_timestamps: int = 0  # frames whose pts did not increase (duplicates, overlapping joins): left out
    size_changes: list[str] = field(default_factory=list)  # "WxH -> WxH at 1.240s", scaled to the first size
    truncated: str | None = None  # why the file looks cut short (its header promised more)

    def warnings(self) -> list[str]:
        """What the run must say about the input even with -q (damaged packets are reported by the caller)."""
        out = []
        if self.truncated:
            out.append(f"the input looks truncated: {self.truncated}; the output ends where the input does")
        if self.corrupt_frames:
            out.append(f"{self.corrupt_frames} frame(s) decoded with damaged (concealed) macroblocks")
        if self.repeated_timestamps:
            out.append(f"{self.repeated_timestamps} frame(s) repeated an earlier timestamp and were left out")
        for change in self.size_changes:
            out.append(f"the picture size changes mid-stream ({change}); later frames were scaled to the first size")
        return out

    @property
    def damage_summary(self) -> str | None:
        """Damage ``--strict`` refuses: damaged packets, corrupt frames, a cut tail, a size change."""
        parts = []
        if self.damaged_packets:
            parts.append(f"{self.damaged_packets} damaged packet(s) ({self.first_error})")
        if self.corrupt_frames:
            parts.append(f"{self.corrupt_frames} frame(s) with damaged macroblocks")
        if self.truncated:
            parts.append(f"truncated ({self.truncated})")
        if self.size_changes:
            parts.append(f"picture size changes ({self.size_changes[0]})")
        return "; ".join(parts) or None


class VideoReader:
    """Decodes ``info.video`` from ``path`` between ``start`` and ``start + duration`` (seconds)."""

    def __init__(
        self,
        path: str | Path,
        info: MediaInfo,
        config: ReaderConfig | None = None,
        start: float | None = None,
        duration: float | None = None,
        start_byte: int | None = None,
    ) -> None:
        """``start_byte``: where in the file the key frame at ``start`` begins (a batch segment's, from its plan):
        on a BYTE_START_FORMATS file the reader opens the file BYTE_START_LEAD before it, and seeks instead where
        the streams there are not the probe's (``open_at_byte``) or the first frame decoded is not a key frame at
        or before the start (and at most BYTE_START_SLACK before it)."""
        self.path = Path(path)
        self.info = info
        self.config = config or ReaderConfig()
        # a range (a segment, --start/--duration) is never checked for a cut tail, which on a TS needs the estimate
        self._ranged = start is not None or duration is not None
        usable = start is not None and start_byte is not None and start_byte > 0
        self._start_byte = start_byte if usable and info.format_name in BYTE_START_FORMATS else None
        self.container = self._open()
        self.video = self.container.streams[info.video.index]
        self.video.thread_type = "AUTO"
        if self.config.threads:
            self.video.codec_context.thread_count = self.config.threads
        # every other stream: audio, subtitles, data, attachments, extra video (cover art, a second angle)
        self.side_streams = [s for s in self.container.streams if s.index != self.video.index]
        tb = self.video.time_base
        # --start and --duration count from the stream's own start (a TS at 10:00:00 is cut with --start 1)
        origin = info.video.start_time if start is not None else 0.0
        start = None if start is None else origin + start
        self.start = start
        self.end = None if duration is None else (start if start is not None else origin) + duration
        self._start_pts = None if start is None else int(Fraction(start).limit_denominator(10**9) / tb)
        self._end_time = None if self.end is None else Fraction(self.end).limit_denominator(10**9)
        self.offset: Fraction | None = None if start is not None else Fraction(0)
        self.stats = ReadStats()
        self._pending: list[av.Packet] = []
        self._early: list[av.Packet] = []  # side packets seen before the first kept frame (range starts)
        self._size: tuple[int, int] | None = None
        self._diversion: _Diversion | None = None
        self._side_end: _SideEnd | None = None  # when a range's side packets are all in (made on first use)

    def _open(self) -> av.container.InputContainer:
        if self._start_byte is not None:
            container = open_at_byte(self.path, self.info, self._start_byte)
            if container is not None:
                return container
            self._start_byte = None  # opened as any range is, and sought
        return open_probed(self.path, self.info) if self._ranged else open_input(self.path)

    @property
    def opened_at_byte(self) -> int | None:
        """The key frame's byte position the file is read from (from BYTE_START_LEAD before it: ``start_byte``),
        or None: read from its start and sought, or not a BYTE_START_FORMATS file."""
        return self._start_byte

    # -- packets of the other streams -------------------------------------------------------------
    def take_packets(self) -> list[av.Packet]:
        """Side-stream packets demuxed since the last call, in file order, inside the processed range."""
        packets, self._pending = self._pending, []
        return packets

    def packet_range(self) -> PacketRange:
        """The side-packet range of this run (valid once the first frame has been read)."""
        return PacketRange(self.start, self._end_time, self.offset if self.offset is not None else Fraction(0))

    def divert_side_packets(self, path: Path, emit_start: int, emit_end: int | None) -> None:
        """A batch segment's run: the side packets with a time from ``emit_start`` up to ``emit_end`` (video
        pts; the first segment's window, starting at the stream's first frame, owns what precedes it too) go
        to the side file ``path``, written when the pass has read them all, instead of to ``take_packets``.
        Windows that tile the video tile the side packets: each is kept by exactly one segment."""
        tb = self.video.time_base
        rate = self.info.video.frame_rate or 25
        first = emit_start * tb <= Fraction(self.info.video.start_time).limit_denominator(10**9) + 1 / (2 * rate)
        self.side_streams = [s for s in self.side_streams if s.type in ASSEMBLED_SIDE_TYPES]
        start = None if first else emit_start * tb
        end = None if emit_end is None else emit_end * tb
        self._diversion = _Diversion(SideFileWriter(path), start, _SideEnd.of(end, self.side_streams))

    def _keep_side_packet(self, packet: av.Packet) -> None:
        if self._diversion is not None:
            if self._diversion.owns(packet):
                self._diversion.file.write(packet)
            return
        if self.offset is None and self.start is not None:  # the range's first frame is not decoded yet
            self._early.append(packet)
        elif self.packet_range().keeps(packet):
            self._pending.append(packet)

    def _release_early(self) -> None:
        for packet in self._early:
            self._keep_side_packet(packet)
        self._early = []

    # -- frames -----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self) -> Iterator[Frame]:
        if self._start_pts is None or self._start_pts <= self._first_pts():
            yield from self._frames()
            return
        tb = self.video.time_base
        if self._start_byte is not None:  # opened at the key frame: its first frame must be that key frame
            try:
                yield from self._frames(check_start=True, earliest=self._start_pts - int(BYTE_START_SLACK / tb))
                return
            except _SeekMissedStart as missed:
                log.debug("%s: opened at byte %d, %s; seeking instead", self.path, self._start_byte, missed)
                self._start_byte = None
                self._restart(reopen=True)
        # A demuxer without an index (TS, PS, elementary streams) seeks by timestamp to any packet before the
        # target, not to a key frame: the decoder then starts at the next key frame, which may lie past the
        # range. So seek ``margin`` earlier and check that a key frame at or before the start was decoded;
        # else back off twice as far, and decode from the top only once the margin reaches the stream's start.
        unindexed = self.info.format_name in UNINDEXED_FORMATS
        lead = first_seek_margin(self.info.video.frame_rate) if unindexed else Fraction(0)
        margin = Fraction(0)  # the back-off past the lead: none first, then SEEK_BACKOFF, doubled while it misses
        while True:
            target = self._start_pts - int((margin + lead) / tb)
            if target <= self._first_pts():
                break
            try:
                # the first, near seek (unindexed) gives up as soon as the packets pass the start without a key frame
                yield from self._frames(seek_pts=target, check_start=True, quick_miss=unindexed and not margin)
                return
            except _SeekMissedStart as missed:
                log.debug("%s: seek to %.3fs - %.3fs %s; backing off", self.path, self.start, float(margin), missed)
                margin = max(2 * margin, SEEK_BACKOFF)
                self._restart(reopen=False)  # the next seek flushes the decoder; reopening would read the tail again
        log.debug("%s: no key frame at or before %.3fs found by seeking; decoding from the top", self.path, self.start)
        if margin:
            self._restart(reopen=True)
        yield from self._frames()

    def _first_pts(self) -> int:
        return int(Fraction(self.info.video.start_time).limit_denominator(10**9) / self.video.time_base)

    def _restart(self, reopen: bool) -> None:
        """Forget a pass whose seek missed the start; ``reopen`` to decode from the top."""
        if reopen:
            self.container.close()
            self.container = self._open()
            self.video = self.container.streams[self.info.video.index]
            self.video.thread_type = "AUTO"
            if self.config.threads:
                self.video.codec_context.thread_count = self.config.threads
            self.side_streams = [s for s in self.container.streams if s.index != self.video.index]
            if self._diversion is not None:  # a segment's side file holds only what assembly muxes
                self.side_streams = [s for s in self.side_streams if s.type in ASSEMBLED_SIDE_TYPES]
        self._pending, self._early = [], []
        self._side_end = None
        if self._diversion is not None:
            self._diversion.file.reset()
            self._diversion.side_end.passed.clear()
        self.offset = None
        self._size = None
        self.stats = ReadStats()

    def _frames(
        self,
        seek_pts: int | None = None,
        check_start: bool = False,
        quick_miss: bool = False,
        earliest: int | None = None,
    ) -> Iterator[Frame]:
        """One pass, after a seek to ``seek_pts`` where given. ``check_start``: raises ``_SeekMissedStart``
        (before yielding anything) where the first frame decoded is not a key frame at or before the start (and,
        given ``earliest``, not before that pts), or where nothing in the range was decoded. ``quick_miss``: as
        soon as a video packet decoded after the start comes before any key-frame packet (any key frame to come
        is shown after the start: a miss), without reading on to the next key frame."""
        checking = check_start
        key_packet_seen = not quick_miss
        if seek_pts is not None:
            try:
                self.container.seek(seek_pts, stream=self.video, backward=True, any_frame=False)
            except av.error.FFmpegError as exc:
                raise InputError(f"{self.path}: cannot seek to {self.start:.3f}s ({exc})") from exc
        video_done = False
        last_pts: int | None = None
        demux = self.container.demux(self.video, *self.side_streams)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # damaged or truncated container: stop here
                self._damaged(f"demuxing stopped: {ffmpeg_reason(exc)}")
                break
            if packet.stream.index != self.video.index:
                self._keep_side_packet(packet)
                if video_done and self._side_streams_past_end(packet):
                    break
                continue
            if video_done:
                continue
            if packet.is_corrupt:
                self._damaged("corrupt packet")
            if not key_packet_seen:
                key_packet_seen = packet.is_keyframe
                if not key_packet_seen and packet.dts is not None and packet.dts > self._start_pts:
                    raise _SeekMissedStart(f"a packet decoded at {packet.dts} before any key frame")
            for frame in self._decode(packet):
                self.stats.decoded += 1
                pts = frame.pts
                if pts is None:
                    pts = (last_pts + 1) if last_pts is not None else 0
                if checking:
                    if pts > self._start_pts or (not frame.key_frame and pts >= self._start_pts):
                        raise _SeekMissedStart(f"first decoded frame at pts {pts} (key: {frame.key_frame})")
                    if frame.key_frame and earliest is not None and pts < earliest:
                        raise _SeekMissedStart(f"first key frame at pts {pts}, long before the start")
                    checking = not frame.key_frame  # pre-roll decoded without its references: keep looking
                self._check_size(frame, pts)
                if last_pts is not None and pts <= last_pts:
                    self.stats.repeated_timestamps += 1
                    log.debug("%s: frame with non-increasing pts %s left out", self.path, pts)
                    continue
                if self._start_pts is not None and pts < self._start_pts:
                    continue
                if self._end_time is not None and pts * self.video.time_base >= self._end_time:
                    video_done = True
                    break
                if self.offset is None:
                    self.offset = Fraction(pts) * self.video.time_base
                    self._release_early()
                last_pts = pts
                if frame.is_corrupt:
                    self.stats.corrupt_frames += 1
                yield Frame(self.stats.frames, pts, self.video.time_base, frame)
                self.stats.frames += 1
            if video_done and not self.side_streams:
                break
        if checking:
            raise _SeekMissedStart("no key frame decoded")
        if self.offset is None:
            self.offset = Fraction(0)
            self._release_early()
        if not video_done and self._end_time is None and self.start is None:
            self.stats.truncated = truncation(self.container, self.video, last_pts, self.stats.frames)
        damage = self.stats.damage_summary
        if damage and self.config.strict:
            raise DamagedInputError(f"{self.path}: {damage}; run without --strict to restore what can be decoded")
        if self._diversion is not None:
            self._diversion.file.commit()  # every side packet of the range is in

    def _check_size(self, frame: av.VideoFrame, pts: int) -> None:
        want = (self.info.video.width, self.info.video.height)
        last = self._size or want
        if (frame.width, frame.height) != last:
            change = f"{last[0]}x{last[1]} -> {frame.width}x{frame.height} at {float(pts * self.video.time_base):.3f}s"
            self.stats.size_changes.append(change)
            self._size = (frame.width, frame.height)

    def _side_streams_past_end(self, packet: av.Packet) -> bool:
        if self._diversion is not None:
            return self._diversion.side_end.reached(packet)
        if self._side_end is None:
            self._side_end = _SideEnd.of(self._end_time, self.side_streams)
        return self._side_end.reached(packet)

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            return packet.decode()
        except av.error.FFmpegError as exc:
            self._damaged(ffmpeg_reason(exc))
            return []

    def _damaged(self, reason: str) -> None:
        self.stats.damaged_packets += 1
        if self.stats.first_error is None:
            self.stats.first_error = reason
        log.debug("%s: damaged input: %s", self.path, reason)

    def close(self) -> None:
        if self._diversion is not None:
            self._diversion.file.abort()  # a pass that did not finish (a committed file stays)
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncation(
    container: av.container.InputContainer, stream: av.VideoStream, last_pts: int | None, frames: int
) -> str | None:
    """Why a file that decoded to its end looks cut short, or None: the header or index promised more.

    Matroska and MP4 write the duration (and MP4 the sample count) in their header; a tail cut between
    packets leaves those promises unkept. A stream without such a header (TS, PS, elementary) is cut
    mid-packet in practice, which the demuxer flags as a damaged packet instead.
    """
    if last_pts is None:
        return None
    tb = stream.time_base
    last = last_pts * tb
    declared = int(stream.frames or 0)
    if declared and frames + 1 < declared and container.format.name.startswith("mov"):
        return f"{frames} of the {declared} frames its index lists"
    ends = []
    if stream.duration and stream.start_time is not None:
        ends.append((stream.start_time + stream.duration) * tb)
    if container.duration and not container.format.name.startswith(PTS_DURATION_FORMATS):
        start = Fraction(container.start_time or 0, av.time_base)
        ends.append(start + Fraction(container.duration, av.time_base))
    if not ends:
        return None
    rate = stream.average_rate or stream.guessed_rate or 25
    slack = 2 / Fraction(rate)  # the last frame's own duration, and rounding
    end = max(ends)
    if end - last > slack + Fraction(1, 20):
        return f"it ends at {float(last):.3f}s where its header says {float(end):.3f}s"
    first = Fraction(stream.start_time or 0) * tb if stream.start_time is not None else Fraction(0)
    expected = round((end - first) * Fraction(rate))
    if not _is_vfr(stream) and frames + 1 < expected:  # packets cut from the decode-order tail (B-frames)
        return f"{frames} frames where its header's duration holds {expected}"
    return None


def _is_vfr(stream: av.VideoStream) -> bool:
    avg, base = stream.average_rate, stream.base_rate or stream.guessed_rate
    return bool(avg and base and abs(Fraction(avg) - Fraction(base)) > Fraction(1, 100) * Fraction(base))
