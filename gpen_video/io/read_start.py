"""Where a range's reading starts: at its key frame's byte, after a seek backed off while it misses, or at the top.

A demuxer without an index (TS, PS, elementary streams) seeks by timestamp to any packet before the target, not to a
key frame: the decoder then starts at the next key frame, which may lie past the range. So each start hands the
decode loop a ``StartCheck`` (what its first frames must show); where they do not, the loop raises ``StartMissed``
before handing any frame on, and the finder starts again: a seek instead of the byte start, then twice as far back,
and from the top once the margin reaches the stream's start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
from av.codec.hwaccel import HWAccel

from gpen_video.errors import InputError
from gpen_video.io.containers import BYTE_START_FORMATS, UNINDEXED_FORMATS
from gpen_video.io.light_open import open_at_byte, open_probed
from gpen_video.io.probe import MediaInfo, open_input

log = logging.getLogger(__name__)

SEEK_BACKOFF = Fraction(1)  # seconds: the back-off on UNINDEXED_FORMATS after a first miss; doubled while it misses
# The first seek on those goes only this many frames early (a key frame's decode time precedes its presentation by
# the B-frame delay): a start on a key frame (a batch segment's, planned on one) then reads no packet before it. A
# start inside a GOP misses (the first frame decoded is the next key frame, read up to) and backs off SEEK_BACKOFF.
SEEK_LEAD_FRAMES = 4
# The earliest a byte start's first key frame may be, before the start (seconds): its lead of 8 kB holds a few
# frames. Earlier means another reading of the timestamps: FFmpeg corrects a TS's 33-bit wrap from the first it
# reads, so a file that crosses the wrap, opened past it, is 2^33 ticks (26.5 hours) off.
BYTE_START_SLACK = 5


def first_seek_margin(frame_rate: float | None) -> Fraction:
    """Seconds before the start that the first seek aims at, on a demuxer without an index."""
    return SEEK_LEAD_FRAMES / Fraction(frame_rate or 25).limit_denominator(10**6)


class StartMissed(Exception):
    """A pass's read did not start at the last key frame at or before the range's start."""


@dataclass(frozen=True)
class StartCheck:
    """What a pass's first frames must show for its start to hold (nothing, read from the top)."""

    key_by: int | None = None  # the first key frame decoded must be at or before this pts (the range's start)...
    earliest: int | None = None  # ...and not before this one (a byte start: BYTE_START_SLACK before it)
    quick_miss: bool = False  # a video packet decoded past ``key_by`` before any key-frame packet is a miss already


FROM_TOP = StartCheck()


class StartWatch:
    """One pass's first packets and frames held to its ``StartCheck``: ``StartMissed`` before any frame goes on."""

    def __init__(self, check: StartCheck) -> None:
        self.check = check
        self.checking = check.key_by is not None
        self._key_packet_seen = not check.quick_miss

    def packet(self, packet: av.Packet) -> None:
        """A video packet about to be decoded: a quick miss where it passes the start before any key frame."""
        if self._key_packet_seen:
            return
        self._key_packet_seen = packet.is_keyframe
        key_by = self.check.key_by
        if not self._key_packet_seen and packet.dts is not None and key_by is not None and packet.dts > key_by:
            raise StartMissed(f"a packet decoded at {packet.dts} before any key frame")

    def frame(self, pts: int, key_frame: bool) -> None:
        """A decoded frame: until the first key frame, it must not pass the start (nor, a key frame, come too early)."""
        key_by = self.check.key_by
        if not self.checking or key_by is None:
            return
        if pts > key_by or (not key_frame and pts >= key_by):
            raise StartMissed(f"first decoded frame at pts {pts} (key: {key_frame})")
        if key_frame and self.check.earliest is not None and pts < self.check.earliest:
            raise StartMissed(f"first key frame at pts {pts}, long before the start")
        self.checking = not key_frame  # pre-roll decoded without its references: keep looking

    def finish(self) -> None:
        """The pass ended: a miss where no key frame was decoded in it."""
        if self.checking:
            raise StartMissed("no key frame decoded")


class RangeReader(Protocol):
    """What the finder starts a pass on: the reader's open file and video stream, and its way to forget a pass."""

    container: av.container.InputContainer
    video: av.VideoStream
    start: float | None  # the range's start, seconds from the file's time zero

    def rewind(self, reopen: bool) -> None: ...


class StartFinder:
    """Opens the file for a range and starts each pass on it: at the key frame's byte, by seeking, or at the top."""

    def __init__(
        self,
        path: Path,
        info: MediaInfo,
        start: float | None,
        duration: float | None,
        start_byte: int | None,
        hwaccel: HWAccel | None = None,
    ) -> None:
        self.path = path
        self._hwaccel = hwaccel  # NVDEC for the video, or None
        self.info = info
        # a range (a segment, --start/--duration) is never checked for a cut tail, which on a TS needs the estimate
        self._ranged = start is not None or duration is not None
        usable = start is not None and start_byte is not None and start_byte > 0
        self._start_byte = start_byte if usable and info.format_name in BYTE_START_FORMATS else None
        self._start_pts = 0  # the range's start (pts), once ``first`` finds one to look for
        self._margin = Fraction(0)  # the back-off past the lead: none first, then SEEK_BACKOFF, doubled while it misses

    def open_file(self) -> av.container.InputContainer:
        """The file opened at the key frame's byte where that works, else as any range (or the whole file) is."""
        if self._start_byte is not None:
            container = open_at_byte(self.path, self.info, self._start_byte, hwaccel=self._hwaccel)
            if container is not None:
                return container
            self._start_byte = None  # opened as any range is, and sought
        if self._ranged:
            return open_probed(self.path, self.info, hwaccel=self._hwaccel)
        return open_input(self.path, hwaccel=self._hwaccel)

    @property
    def opened_at_byte(self) -> int | None:
        """The key frame's byte position the file is read from, or None: read from its start and sought."""
        return self._start_byte

    def first(self, reader: RangeReader, start_pts: int | None) -> StartCheck:
        """The first pass's start, made on ``reader``, for a range from ``start_pts`` (None: the whole file)."""
        if start_pts is None or start_pts <= self._first_pts(reader):
            return FROM_TOP
        self._start_pts = start_pts
        if self._start_byte is not None:  # opened at the key frame: its first frame must be that key frame
            return StartCheck(start_pts, earliest=start_pts - int(BYTE_START_SLACK / reader.video.time_base))
        return self._seek(reader)

    def after_miss(self, reader: RangeReader, missed: StartMissed) -> StartCheck:
        """The next pass's start, made on ``reader``, after a pass whose start ``missed``."""
        if self._start_byte is not None:
            log.debug("%s: opened at byte %d, %s; seeking instead", self.path, self._start_byte, missed)
            self._start_byte = None
            reader.rewind(reopen=True)
        else:
            log.debug("%s: seek to %.3fs - %.3fs %s; backing off", self.path, reader.start, float(self._margin), missed)
            self._margin = max(2 * self._margin, SEEK_BACKOFF)
            reader.rewind(reopen=False)  # the next seek flushes the decoder; reopening would read the tail again
        return self._seek(reader)

    def _seek(self, reader: RangeReader) -> StartCheck:
        """A seek the margin (and, without an index, a few frames) before the start; from the top where that is at or
        before the stream's start."""
        unindexed = self.info.format_name in UNINDEXED_FORMATS
        lead = first_seek_margin(self.info.video.frame_rate) if unindexed else Fraction(0)
        target = self._start_pts - int((self._margin + lead) / reader.video.time_base)
        if target <= self._first_pts(reader):
            log.debug("%s: no key frame at or before %.3fs found by seeking; decoding from the top", self.path,
                      reader.start)  # fmt: skip
            if self._margin:
                reader.rewind(reopen=True)
            return FROM_TOP
        try:
            reader.container.seek(target, stream=reader.video, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot seek to {reader.start:.3f}s ({exc})") from exc
        # the first, near seek (unindexed) gives up as soon as the packets pass the start without a key frame
        return StartCheck(self._start_pts, quick_miss=unindexed and not self._margin)

    def _first_pts(self, reader: RangeReader) -> int:
        return int(Fraction(self.info.video.start_time).limit_denominator(10**9) / reader.video.time_base)
