"""The side streams' packets (audio, subtitles, data) on their own channel from the demuxer to the writer.

The decode thread puts each batch of packets it demuxed here before it hands the frame they came with to
the flow, so by the time the writer holds a frame, every packet demuxed before it is in the channel. The
writer then takes the packets due up to that frame's time: the side packets and the video frames reach
the muxer merged by time (as ``jobs.assemble`` merges segments with ``heapq.merge``), while frames go
through faces, restore and compose without carrying them.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from fractions import Fraction

import av

_BEFORE_EVERYTHING = Fraction(-(10**12))


def packet_time(packet: av.Packet) -> Fraction:
    """Decode time in seconds (presentation time without a dts); a packet without either goes first."""
    ts = packet.dts if packet.dts is not None else packet.pts
    if ts is None or not packet.time_base:
        return _BEFORE_EVERYTHING
    return Fraction(ts) * Fraction(packet.time_base)


class SidePackets:
    """A thread-safe heap of packets by time; ties keep the demuxer's order."""

    def __init__(self) -> None:
        self._heap: list[tuple[Fraction, int, av.Packet]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()

    def put(self, packets: list[av.Packet]) -> None:
        with self._lock:
            for packet in packets:
                heapq.heappush(self._heap, (packet_time(packet), next(self._order), packet))

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
