"""The main video stream's frames and key frames, found without reading the file through.

MOV/MP4/AVI list every sample in their header (``stream.index_entries``): every frame's pts and the key frames come
from there. Matroska's cues give the key frames (or cluster starts) only, and TS, PS, MXF and elementary streams have
no index: there a seek to every segment boundary finds the first key frame past it (in TS and PS, also where its packet
begins in the file), and the frames in between are left to the frame rate. ``exact`` (or a file without duration or
rate) demuxes every packet instead.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.errors import InputError
from gpen_video.io.containers import BYTE_START_FORMATS, CUE_FORMATS, UNINDEXED_FORMATS
from gpen_video.io.light_open import open_probed
from gpen_video.io.probe import MediaInfo, ffmpeg_reason, reorder_shift, sample_index

log = logging.getLogger(__name__)

INDEX_SOURCES = ("index", "scan", "cues", "seek")  # the first two list every frame; the others key frames only
REORDER_FRAMES = 4  # frames a key frame's decode time may precede its presentation time (B-frames), and more


@dataclass(frozen=True)
class PacketIndex:
    """The video stream's packet timestamps (sorted pts), its key frames' pts, and each frame's duration.

    ``pts`` lists every frame where the container has a sample index (or the file was scanned); with
    cues or seeks it is empty and ``frame_ticks`` (the nominal frame duration) and ``end`` (the pts past
    the last frame, from the container's duration) stand in for it.
    """

    pts: list[int]
    keyframes: list[int]
    time_base: Fraction
    durations: dict[int, int] = field(default_factory=dict)  # pts -> the source packet's duration (ticks)
    source: str = "scan"  # index | scan | cues | seek
    frame_ticks: Fraction | None = None  # nominal frame duration, in ticks (cues / seek only)
    end: int | None = None  # pts just past the last frame (cues / seek only)
    gop: int = 0  # the widest key-frame interval seen (ticks; seek plans only)
    unindexed: bool = False  # the reader's seek lands on any packet and backs off (TS, PS: reader.UNINDEXED_FORMATS)
    origin: float = 0.0  # the stream's start (seconds): a segment's decode window counts from it, as --start does
    vfr: bool = False  # the probe found a variable rate (cues / seek: frames are then off the nominal grid)
    # key frame pts -> where its packet begins in the file (seek plans of reader.BYTE_START_FORMATS: TS, PS)
    key_positions: dict[int, int] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """Every frame's pts is known (not estimated from the rate)."""
        return bool(self.pts)

    @property
    def first(self) -> int:
        return self.pts[0] if self.pts else self.keyframes[0]

    @property
    def frame_count(self) -> int:
        """Frames in the input: exact, or estimated from the duration and the rate."""
        if self.pts:
            return len(self.pts)
        return max(round((self.end - self.first) / self.frame_ticks), 1) if self.end and self.frame_ticks else 1


def index_packets(path: Path, info: MediaInfo, segment_seconds: float = 60.0, exact: bool = False) -> PacketIndex:
    """The main video stream's frames and key frames, from the container's index where it has one.

    MOV/MP4/AVI: the sample index (nothing read but the header and the first packet; B-frames at a
    variable rate, whose presentation times the index does not give, are scanned). Matroska: the cues, or seeks where
    they hold too few key frames to cut on. Others: a seek every ``segment_seconds``. ``exact`` (or a
    file without duration or rate) demuxes every packet instead, as ``probe --exact`` does.
    """
    index = None
    with open_probed(path, info) as container:
        stream = container.streams[info.video.index]
        time_base = stream.time_base or info.video.time_base
        if not exact:
            index = _from_sample_index(container, stream, info, time_base, segment_seconds)
            if index is None:
                index = _from_cues_or_seeks(container, stream, info, time_base, segment_seconds)
    return replace(index or _scan_packets(path, info), origin=info.video.start_time)


def _from_sample_index(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    info: MediaInfo,
    time_base: Fraction,
    segment_seconds: float,
) -> PacketIndex | None:
    if container.format.name.split(",")[0] in CUE_FORMATS:
        return None
    entries = sample_index(stream, info.size_bytes)
    if entries is None:
        return None
    first_packet = _first_packet(container, stream)
    shift = reorder_shift(first_packet)
    if shift and len({b - a for a, b in itertools.pairwise(entries.timestamps)}) > 1:
        # B-frames at a variable rate: the index holds decode times only, and the presentation times
        # (a segment's first frame, each frame's duration) cannot be derived from them: scan instead
        log.info("%s: reordered frames at a variable rate; reading the packets to plan", info.path)
        return _scan_packets(info.path, info)
    pts = sorted(t + shift for t in entries.timestamps)
    keyframes = sorted(t + shift for t in entries.key_timestamps)
    if shift and not _starts_confirmed(container, stream, keyframes, time_base, segment_seconds):
        log.info("%s: key frames shown out of decode order (open GOPs); reading the packets to plan", info.path)
        return _scan_packets(info.path, info)
    durations = {a: b - a for a, b in itertools.pairwise(pts)}
    if len(pts) > 1:
        durations[pts[-1]] = min(durations.values())
    return PacketIndex(pts, keyframes, time_base, durations, "index")


def _starts_confirmed(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    keyframes: list[int],
    time_base: Fraction,
    segment_seconds: float,
) -> bool:
    """With reordering, a key frame is shown at its decode time + the delay only in a closed GOP: seek to each
    key frame a segment would start on and read its packet (one packet a segment, not a scan) to check."""
    if segment_seconds <= 0:
        return True
    limit = Fraction(segment_seconds).limit_denominator(10**6) / time_base
    starts = [keyframes[0]]
    for kf in keyframes:
        if kf - starts[-1] >= limit:
            starts.append(kf)
    try:
        for start in starts[1:]:
            container.seek(start, stream=stream, backward=True, any_frame=False)
            packet = next((p for p in container.demux(stream) if p.pts is not None), None)
            if packet is None or not packet.is_keyframe or packet.pts != start:
                return False
    except av.error.FFmpegError:
        return False
    return True


def _first_packet(container: av.container.InputContainer, stream: av.VideoStream) -> av.Packet | None:
    """The first video packet with both timestamps (its pts - dts is the reordering delay)."""
    with contextlib.suppress(av.error.FFmpegError):
        for packet in container.demux(stream):
            if packet.pts is not None and packet.dts is not None:
                return packet
    return None


def _from_cues_or_seeks(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    info: MediaInfo,
    time_base: Fraction,
    segment_seconds: float,
) -> PacketIndex | None:
    rate = info.video.frame_rate
    if not rate or not info.video.duration:
        return None
    frame_ticks = 1 / (Fraction(rate) * time_base)
    start = _ticks(info.video.start_time, time_base)
    end = _ticks(info.video.start_time + info.video.duration, time_base)
    source = "seek"
    keyframes: list[int] = []
    name = container.format.name.split(",")[0]
    if name in CUE_FORMATS:
        with contextlib.suppress(av.error.FFmpegError):
            container.seek(0, stream=stream, backward=True)  # loads the cues
        keyframes = sorted({e.timestamp for e in stream.index_entries if e.is_keyframe})
        gaps = [b - a for a, b in itertools.pairwise([*keyframes, end])]
        limit = Fraction(max(segment_seconds, 0)) / time_base
        if keyframes and (segment_seconds <= 0 or max(gaps) <= 2 * limit):
            source = "cues"
        else:
            keyframes = []
    finds = _SeekFinds()
    if not keyframes:
        lead = int(REORDER_FRAMES * frame_ticks)
        finds = _keyframes_by_seeking(container, stream, start, end, time_base, segment_seconds, lead)
        keyframes = finds.keyframes
    keyframes = [k for k in keyframes if k < end]
    if not keyframes:
        return None
    positions = {k: p for k, p in finds.positions.items() if k < end} if name in BYTE_START_FORMATS else {}
    return PacketIndex([], keyframes, time_base, {}, source, frame_ticks, end, finds.gop, name in UNINDEXED_FORMATS,
                       vfr=info.video.is_vfr, key_positions=positions)  # fmt: skip


@dataclass
class _SeekFinds:
    """What the boundary seeks found: one key frame a boundary, the widest key-frame interval seen, and where each
    key frame found begins in the file (its packet's position)."""

    keyframes: list[int] = field(default_factory=list)
    gop: int = 0
    positions: dict[int, int] = field(default_factory=dict)


def _keyframes_by_seeking(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    start: int,
    end: int,
    time_base: Fraction,
    segment_seconds: float,
    lead: int = 0,
) -> _SeekFinds:
    """One key frame near every ``segment_seconds`` boundary (a seek and a few packets each, no scan), the
    widest key-frame interval seen, and where each key frame found begins in the file (its packet's position).
    A seek in a container without index (TS, PS) lands on a packet whose decode time is before the target:
    seeking ``lead`` ticks (a few frames of reordering) early lands before a key frame shown at the target, not
    just past it (then the boundary would be a GOP later, and finding it would read that GOP). The first target
    (the stream's start) too: else the seek lands just past the first key frame, and measuring the key-frame
    interval reads a second GOP."""
    step = Fraction(segment_seconds).limit_denominator(10**6) / time_base if segment_seconds > 0 else None
    finds = _SeekFinds()
    found = finds.keyframes
    target: Fraction | None = Fraction(start)
    while target is not None:
        try:
            container.seek(math.floor(target) - lead, stream=stream, backward=True, any_frame=False)
            _read_to_boundary(container.demux(stream), target, start, end, step, lead, finds)
        except av.error.FFmpegError as exc:
            log.warning("%s: seeking to plan segments failed (%s)", container.name, ffmpeg_reason(exc))
            break
        # the next boundary: a segment after the key frame just found (after this target where there was none)
        base = found[-1] if found and found[-1] >= target - lead else target
        target = base + step if step is not None and base + step < end else None
    if found and found[0] > start:
        found.insert(0, start)  # the first segment starts at the first frame (decoded from the file's start)
    return finds


def _read_to_boundary(
    packets: Iterator[av.Packet],
    target: Fraction,
    start: int,
    end: int,
    step: Fraction | None,
    lead: int,
    finds: _SeekFinds,
) -> None:
    """Read the packets after one seek to ``target`` up to the boundary's key frame, adding it to ``finds`` (as
    each is read: a read that fails part way keeps what it found)."""
    found = finds.keyframes
    seen: list[int] = []  # key frames after this seek: the first new one is the boundary
    for packet in packets:
        if packet.pts is None or not packet.is_keyframe:
            if packet.pts is not None and step is not None and packet.pts > target + step:
                break  # no key frame within a segment of this boundary: the next one covers it
            continue
        seen.append(packet.pts)
        if len(seen) > 1:
            finds.gop = max(finds.gop, seen[-1] - seen[-2])
        if target != start and packet.pts < target - lead:
            continue  # landed in an earlier GOP: its key frame would make this segment short
        if packet.pts >= end or (target == start and len(seen) > 1):
            break  # the first seek reads on to a second key frame (the interval), not a boundary
        if not found or packet.pts > found[-1]:
            found.append(packet.pts)
            if packet.pos is not None:  # PyAV: None where FFmpeg has no position
                finds.positions[packet.pts] = packet.pos
            if target != start:
                break


def _ticks(seconds: float, time_base: Fraction) -> int:
    return round(Fraction(seconds).limit_denominator(10**9) / time_base)


def _scan_packets(path: Path, info: MediaInfo) -> PacketIndex:
    """Demux (no decode) the main video stream: all pts, and the key frames' pts."""
    pts: list[int] = []
    keyframes: list[int] = []
    durations: dict[int, int] = {}
    with open_probed(path, info) as container:
        stream = container.streams[info.video.index]
        try:
            for packet in container.demux(stream):
                if packet.pts is None or (packet.size == 0 and packet.dts is None):
                    continue
                pts.append(packet.pts)
                if packet.duration:
                    durations[packet.pts] = packet.duration
                if packet.is_keyframe:
                    keyframes.append(packet.pts)
        except av.error.FFmpegError as exc:  # damaged tail: plan what could be read
            log.warning("%s: indexing stopped early (%s)", path, ffmpeg_reason(exc))
        time_base = stream.time_base or info.video.time_base
    if not pts:
        raise InputError(f"{path}: no video packets with timestamps; it cannot be restored")
    pts.sort()
    keyframes.sort()
    return PacketIndex(pts, keyframes, time_base, durations, "scan")
