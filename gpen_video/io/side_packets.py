"""The side streams' packets (audio, subtitles, data) on their own channel from the demuxer to the writer.

The decode thread puts each batch of packets it demuxed here before it hands the frame they came with to
the flow, so by the time the writer holds a frame, every packet demuxed before it is in the channel. The
writer then takes the packets due up to that frame's time: the side packets and the video frames reach
the muxer merged by time (as ``jobs.assemble`` merges segments with ``heapq.merge``), while frames go
through faces, restore and compose without carrying them.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import struct
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
from av.packet import PacketSideData, packet_sidedata_type_from_literal

from gpen_video.errors import VerificationError

_BEFORE_EVERYTHING = Fraction(-(10**12))


def packet_time(packet: av.Packet) -> Fraction:
    """Decode time in seconds (presentation time without a dts); a packet without either goes first."""
    ts = packet.dts if packet.dts is not None else packet.pts
    if ts is None or not packet.time_base:
        return _BEFORE_EVERYTHING
    return Fraction(ts) * Fraction(packet.time_base)


class SidePackets:
    """A thread-safe heap of packets by time; ties keep the demuxer's order, and so does each stream: a packet
    without a decode time (a Matroska B-frame stream's first ones) would be timed by its presentation time, which
    may lie past its stream's next decode times, so each stream's packets keep their demuxed order (a muxer
    refuses a stream's decode times out of order)."""

    def __init__(self) -> None:
        self._heap: list[tuple[Fraction, int, av.Packet]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._stream_time: dict[int, Fraction] = {}  # stream index -> the key its last packet was given

    def put(self, packets: list[av.Packet]) -> None:
        with self._lock:
            for packet in packets:
                heapq.heappush(self._heap, (self._key(packet), next(self._order), packet))

    def _key(self, packet: av.Packet) -> Fraction:
        """The packet's decode time; without one, its stream's previous key (it comes next in decode order); never
        before its stream's previous key."""
        index = packet.stream.index if packet.stream is not None else -1
        last = self._stream_time.get(index)
        time = packet_time(packet) if packet.dts is not None or last is None else last
        if last is not None and time < last:
            time = last
        self._stream_time[index] = time
        return time

    def due(self, until: Fraction) -> list[av.Packet]:
        """The packets with a time at or before ``until`` seconds, in time order."""
        out = []
        with self._lock:
            while self._heap and self._heap[0][0] <= until:
                out.append(heapq.heappop(self._heap)[2])
        return out

    def rest(self) -> list[av.Packet]:
        """Everything left, in time order (after the last frame)."""
        with self._lock:
            out = [heapq.heappop(self._heap)[2] for _ in range(len(self._heap))]
        return out


# -- a segment's side packets on disk ----------------------------------------------------------------
# A batch segment's reader demuxes the side streams with its video (in a TS they are interleaved with it
# 188 bytes at a time, so reading them alone is reading the whole file again) and keeps the packets whose
# time falls in the segment's own span (``[emit_start, emit_end)`` of the video, which tiles the file), so
# across segments every packet is kept exactly once; assembly takes them from these files instead of the
# input. A packet is stored as demuxed: payload, pts, dts, duration, flags, time base and side data.

_MAGIC = b"GPVSIDE1"
_RECORD = struct.Struct("<iiiqqqBII")  # stream, tb num, tb den, pts, dts, duration, flags, side data, size
_SIDE = struct.Struct("<iI")  # side data type, size
_END = -1  # the last record's stream: the file is complete, its ``size`` field the packet count
_HAS_PTS, _HAS_DTS, _KEY, _CORRUPT = 1, 2, 4, 8  # (PyAV cannot set a packet's discard flag: not kept)


def side_file_for(segment_file: Path) -> Path:
    """Where a segment file's side packets go (next to it: ``seg-00003.nut.side``)."""
    return segment_file.with_name(segment_file.name + ".side")


class SideFileWriter:
    """Writes packets to ``path`` (a temporary name until ``commit``); ``reset`` forgets them (a seek that
    missed restarts the pass)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp = path.with_name(f".{path.name}.partial-{os.getpid()}")
        self._file = open(self.temp, "wb")  # noqa: SIM115 - closed by commit or abort
        self._file.write(_MAGIC)
        self.count = 0

    def write(self, packet: av.Packet) -> None:
        if packet.size == 0:
            return
        tb = Fraction(packet.time_base) if packet.time_base else Fraction(0)
        flags = ((packet.pts is not None) * _HAS_PTS | (packet.dts is not None) * _HAS_DTS
                 | packet.is_keyframe * _KEY | packet.is_corrupt * _CORRUPT)  # fmt: skip
        side = [(packet_sidedata_type_from_literal(s.data_type), bytes(s)) for s in packet.iter_sidedata()]
        head = (packet.stream.index, tb.numerator, tb.denominator, packet.pts or 0, packet.dts or 0)
        self._file.write(_RECORD.pack(*head, packet.duration or 0, flags, len(side), packet.size))
        for kind, data in side:
            self._file.write(_SIDE.pack(kind, len(data)) + data)
        self._file.write(bytes(packet))
        self.count += 1

    def reset(self) -> None:
        self._file.seek(len(_MAGIC))
        self._file.truncate()
        self.count = 0

    def commit(self) -> None:
        """Finish the file and give it its name."""
        self._file.write(_RECORD.pack(_END, 0, 1, 0, 0, 0, 0, 0, self.count))
        self._file.close()
        os.replace(self.temp, self.path)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(OSError):
            self.temp.unlink()


def read_side_file(path: Path, streams: dict[int, av.stream.Stream]) -> Iterator[av.Packet]:
    """The packets of a side file, for the input streams ``streams`` (by index); VerificationError where the
    file is not one, is cut short, or names a stream the input lacks."""
    with open(path, "rb") as handle:
        if handle.read(len(_MAGIC)) != _MAGIC:
            raise VerificationError(f"{path.name}: not a segment's side-packet file; the segment is unusable")
        count = 0
        while True:
            head = handle.read(_RECORD.size)
            if len(head) != _RECORD.size:
                raise VerificationError(f"{path.name}: the side-packet file is cut short; the segment is unusable")
            index, num, den, pts, dts, duration, flags, sides, size = _RECORD.unpack(head)
            if index == _END:
                if size != count:
                    raise VerificationError(f"{path.name}: {count} side packets where {size} were written")
                return
            if index not in streams:
                raise VerificationError(f"{path.name}: a side packet of stream #{index}, which the input lacks")
            side = []
            for _ in range(sides):
                kind, length = _SIDE.unpack(handle.read(_SIDE.size))
                side.append((kind, handle.read(length)))
            packet = av.Packet(handle.read(size))
            packet.stream = streams[index]
            if num:
                packet.time_base = Fraction(num, den)
            packet.pts = pts if flags & _HAS_PTS else None
            packet.dts = dts if flags & _HAS_DTS else None
            packet.duration = duration
            packet.is_keyframe = bool(flags & _KEY)
            packet.is_corrupt = bool(flags & _CORRUPT)
            for kind, data in side:
                attached = PacketSideData(kind, len(data))
                memoryview(attached)[:] = data
                packet.set_sidedata(attached)
            count += 1
            yield packet
