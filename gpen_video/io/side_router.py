"""Where the side streams' packets go as the reader demuxes them: to the run, or to a batch segment's side file.

A range's packets are held back until its first frame is decoded (only then is its start known) and handed on
through ``take``; a batch segment's go to its side file instead (``divert``), which is kept only once the pass
has read them all. Each pass whose start missed forgets what it routed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.io.side_packets import SideFileWriter

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


class SideRouter:
    """The side packets of one reader's range: kept for ``take``, held back, or diverted to a segment's side file."""

    def __init__(self, start: float | None, end: Fraction | None) -> None:
        self.start = start  # the range's start, seconds (None: the whole file)
        self.end = end  # its end (None: to the end of the file)
        self._diversion: _Diversion | None = None
        self._pending: list[av.Packet] = []
        self._early: list[av.Packet] = []  # side packets seen before the first kept frame (range starts)
        self._side_end: _SideEnd | None = None  # when a range's side packets are all in (made on first use)

    @property
    def diverted(self) -> bool:
        return self._diversion is not None

    def divert(self, path: Path, start: Fraction | None, end: Fraction | None, streams: list[av.stream.Stream]) -> None:
        """The side packets timed in ``[start, end)`` seconds go to the side file ``path`` (``start`` None: what
        precedes the video too)."""
        self._diversion = _Diversion(SideFileWriter(path), start, _SideEnd.of(end, streams))

    def packet_range(self, offset: Fraction | None) -> PacketRange:
        """The range's packets, its first frame at ``offset`` (None: not decoded yet)."""
        return PacketRange(self.start, self.end, offset if offset is not None else Fraction(0))

    def route(self, packet: av.Packet, offset: Fraction | None) -> None:
        """``packet`` to the side file, held back while the range's first frame is not decoded (``offset`` None),
        or kept for ``take`` where the range keeps it."""
        if self._diversion is not None:
            if self._diversion.owns(packet):
                self._diversion.file.write(packet)
            return
        if offset is None and self.start is not None:
            self._early.append(packet)
        elif self.packet_range(offset).keeps(packet):
            self._pending.append(packet)

    def release_early(self, offset: Fraction) -> None:
        """The range's first frame is decoded, at ``offset``: the packets held back are routed."""
        early, self._early = self._early, []
        for packet in early:
            self.route(packet, offset)

    def take(self) -> list[av.Packet]:
        """Side-stream packets routed since the last call, in file order."""
        packets, self._pending = self._pending, []
        return packets

    def past_end(self, packet: av.Packet, streams: list[av.stream.Stream]) -> bool:
        """Every side packet of the range is in (the video is done; ``packet`` is the last demuxed)."""
        if self._diversion is not None:
            return self._diversion.side_end.reached(packet)
        if self._side_end is None:
            self._side_end = _SideEnd.of(self.end, streams)
        return self._side_end.reached(packet)

    def forget_pass(self) -> None:
        """A pass whose start missed: what it routed is dropped, its side file emptied."""
        self._pending, self._early = [], []
        self._side_end = None
        if self._diversion is not None:
            self._diversion.file.reset()
            self._diversion.side_end.passed.clear()

    def commit(self) -> None:
        """The pass read every side packet of the range: the side file is kept."""
        if self._diversion is not None:
            self._diversion.file.commit()

    def abort(self) -> None:
        """A pass that did not finish (a committed file stays)."""
        if self._diversion is not None:
            self._diversion.file.abort()
