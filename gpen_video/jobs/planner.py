"""Cut a long input into segments that start on key frames, each restorable on its own.

The plan never reads the input through. MOV/MP4/AVI list every sample in their header
(``stream.index_entries``): every frame's pts and the key frames come from there. Matroska's cues give
the key frames (or cluster starts) only, and TS, PS, MXF and elementary streams have no index: there
the plan seeks to every segment boundary and takes the first key frame it finds, and the frames in
between are counted from the frame rate (an estimate: segments still tile the file exactly, since a
segment emits the frames ``emit_start <= pts < emit_end``, whatever their number). Key frames are
grouped into segments of about ``segment_seconds``; each segment emits the frames from
its key frame up to the next segment's, after decoding some frames before it (warm-up: tracks and
landmark smoothing settle, then those frames are dropped) and some after it (the faces stage's
look-ahead). With long GOPs (``PlanSettings.emit_after_key``, as batch jobs plan) a segment instead decodes
from its key frame and emits from the end of its warm-up there, so no GOP before it is read again; so does a
segment of a TS or PS plan whatever its GOP, whose key frame's byte position the seeks found: the segment's
reader opens the file at its key frame, without a seek (``Segment.decode_from_byte``; not at a rate whose frames
fall between the time base's ticks, such as 23.976 fps in 90 kHz, where those segments keep the seek). The plan
depends only on the input and the settings, so a resumed job gets exactly the segments an uninterrupted one
would, and their files can be reused.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av

from gpen_video.config import FacesConfig
from gpen_video.errors import InputError
from gpen_video.faces.stage import lookahead_frames
from gpen_video.io.containers import BYTE_START_FORMATS, CUE_FORMATS, UNINDEXED_FORMATS
from gpen_video.io.light_open import open_probed
from gpen_video.io.probe import MediaInfo, ffmpeg_reason, reorder_shift, sample_index
from gpen_video.run.job import SegmentWindow

log = logging.getLogger(__name__)


INDEX_SOURCES = ("index", "scan", "cues", "seek")  # the first two list every frame; the others key frames only
REORDER_FRAMES = 4  # frames a key frame's decode time may precede its presentation time (B-frames), and more
# A GOP is long (PlanSettings.emit_after_key) from this many warm-ups: cutting after the warm-up then saves at least
# a warm-up's frames per boundary. Shorter GOPs (and all-intra) keep cuts on key frames (the look-ahead plays no
# part), except where the plan found the key frame's byte position (TS, PS): those cut after the warm-up too.
LONG_GOP_WARMUPS = 2


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
    unindexed: bool = False  # the reader's seek lands on any packet, backs off (TS, PS: containers.UNINDEXED_FORMATS)
    origin: float = 0.0  # the stream's start (seconds): a segment's decode window counts from it, as --start does
    vfr: bool = False  # the probe found a variable rate (cues / seek: frames are then off the nominal grid)
    # key frame pts -> where its packet begins in the file (seek plans of containers.BYTE_START_FORMATS: TS, PS)
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


@dataclass(frozen=True)
class Segment:
    """One planned piece: emits source frames ``emit_start <= pts < emit_end``."""

    index: int
    emit_start: int
    emit_end: int | None  # None: to the end of the file
    decode_from: float  # seconds; the reader seeks to the key frame at or before
    decode_until: float | None  # seconds; None: to the end
    frames: int  # frames emitted
    decode_from_byte: int | None = None  # where the key frame it decodes from begins, where the plan found it

    @property
    def window(self) -> SegmentWindow:
        return SegmentWindow(self.decode_from, self.emit_start, self.emit_end, self.decode_until, self.decode_from_byte)


@dataclass(frozen=True)
class PlanSettings:
    """What shapes a plan (part of the settings hash: change one and old segments are not reused)."""

    segment_seconds: float = 60.0
    warmup_frames: int = 16
    lookahead_frames: int = 24
    # Long GOPs (a key-frame interval of LONG_GOP_WARMUPS warm-ups or more): a segment decodes from its key frame K
    # and emits from the frame ``warmup_frames`` after it, instead of emitting from K after decoding from the GOP before
    # (the overlap per boundary drops from a GOP + the look-ahead to the warm-up + the look-ahead). Segment
    # files are re-encoded, each starting on its own key frame, so an emitted start need not be a source one. A key
    # frame whose byte position the plan found (``PacketIndex.key_positions``: TS, PS) is cut so whatever its GOP.
    emit_after_key: bool = False

    @classmethod
    def for_faces(cls, faces: FacesConfig, segment_seconds: float, overlap_frames: int | None = None) -> PlanSettings:
        """The faces stage's overlap: what a segment must decode around the frames it emits so that they come
        out as in one run over the whole file.

        - Look-ahead: the faces stage releases a frame once ``FaceStage.lookahead`` newer frames are in
          (smoothing window, gap bridging, track length, the candidates' second look); a released frame is
          final, so decoding more after the segment's last frame changes nothing it emits.
        - Warm-up (``overlap_frames``, by default): the smoothing window's (or a bridged gap's) past, and a
          key-frame interval for the tracks found by the first full detection to be seen by a second one.
        """
        smooth = faces.smooth_window if faces.smooth else 0
        reach = max(smooth, faces.max_gap + 1, faces.min_track_length, 1)
        lookahead = lookahead_frames(faces)  # FaceStage.lookahead
        warmup = reach + max(faces.keyframe_interval, 8) if overlap_frames is None else overlap_frames
        return cls(float(segment_seconds), int(warmup), int(lookahead))


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
    gop = 0
    positions: dict[int, int] = {}
    if not keyframes:
        lead = int(REORDER_FRAMES * frame_ticks)
        keyframes, gop, positions = _keyframes_by_seeking(container, stream, start, end, time_base, segment_seconds,
                                                          lead)  # fmt: skip
    keyframes = [k for k in keyframes if k < end]
    if not keyframes:
        return None
    positions = {k: p for k, p in positions.items() if k < end} if name in BYTE_START_FORMATS else {}
    return PacketIndex([], keyframes, time_base, {}, source, frame_ticks, end, gop, name in UNINDEXED_FORMATS,
                       vfr=info.video.is_vfr, key_positions=positions)  # fmt: skip


def _keyframes_by_seeking(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    start: int,
    end: int,
    time_base: Fraction,
    segment_seconds: float,
    lead: int = 0,
) -> tuple[list[int], int, dict[int, int]]:
    """One key frame near every ``segment_seconds`` boundary (a seek and a few packets each, no scan), the
    widest key-frame interval seen, and where each key frame found begins in the file (its packet's position).
    A seek in a container without index (TS, PS) lands on a packet whose decode time is before the target:
    seeking ``lead`` ticks (a few frames of reordering) early lands before a key frame shown at the target, not
    just past it (then the boundary would be a GOP later, and finding it would read that GOP). The first target
    (the stream's start) too: else the seek lands just past the first key frame, and measuring the key-frame
    interval reads a second GOP."""
    step = Fraction(segment_seconds).limit_denominator(10**6) / time_base if segment_seconds > 0 else None
    found: list[int] = []
    positions: dict[int, int] = {}
    gop = 0
    target: Fraction | None = Fraction(start)
    while target is not None:
        try:
            container.seek(math.floor(target) - lead, stream=stream, backward=True, any_frame=False)
            seen: list[int] = []  # key frames after this seek: the first new one is the boundary
            for packet in container.demux(stream):
                if packet.pts is None or not packet.is_keyframe:
                    if packet.pts is not None and step is not None and packet.pts > target + step:
                        break  # no key frame within a segment of this boundary: the next one covers it
                    continue
                seen.append(packet.pts)
                if len(seen) > 1:
                    gop = max(gop, seen[-1] - seen[-2])
                if target != start and packet.pts < target - lead:
                    continue  # landed in an earlier GOP: its key frame would make this segment short
                if packet.pts >= end or (target == start and len(seen) > 1):
                    break  # the first seek reads on to a second key frame (the interval), not a boundary
                if not found or packet.pts > found[-1]:
                    found.append(packet.pts)
                    if packet.pos is not None:  # PyAV: None where FFmpeg has no position
                        positions[packet.pts] = packet.pos
                    if target != start:
                        break
        except av.error.FFmpegError as exc:
            log.warning("%s: seeking to plan segments failed (%s)", container.name, ffmpeg_reason(exc))
            break
        # the next boundary: a segment after the key frame just found (after this target where there was none)
        base = found[-1] if found and found[-1] >= target - lead else target
        target = base + step if step is not None and base + step < end else None
    if found and found[0] > start:
        found.insert(0, start)  # the first segment starts at the first frame (decoded from the file's start)
    return found, gop, positions


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


def plan_segments(index: PacketIndex, settings: PlanSettings) -> list[Segment]:
    """Group key frames into segments of about ``settings.segment_seconds`` (short inputs: one segment).

    Decode windows are in seconds from the stream's start (``index.origin``), as the reader counts them.
    With ``settings.emit_after_key``, a segment whose key frame closes a long GOP (or whose byte position the plan
    found) decodes from that key frame and emits from ``warmup_frames`` frames after it (``_Frames.nth``, where
    that frame's pts is known: not at a rate off the time base's ticks, such as 23.976 fps in 90 kHz); the segment
    before emits up to there.
    """
    tb = index.time_base
    keys = [index.first]
    if settings.segment_seconds > 0:  # 0: the whole file is one segment
        limit = Fraction(settings.segment_seconds).limit_denominator(10**6) / tb  # in ticks
        if index.source == "seek" and index.frame_ticks:  # a boundary's key frame may be the seek's lead early
            limit -= REORDER_FRAMES * index.frame_ticks
        for kf in index.keyframes:
            if kf - keys[-1] >= limit:
                keys.append(kf)
    frames: _Frames = _IndexedFrames(index) if index.exact else _RateFrames(index)
    origin = Fraction(index.origin).limit_denominator(10**9)
    # where each segment starts emitting, and the key frame it decodes from when that is not the start itself
    starts: list[int] = list(keys)
    from_key: list[bool] = [False] * len(keys)
    if settings.emit_after_key:
        for i in range(1, len(keys)):
            shifted = frames.nth(keys[i], settings.warmup_frames)
            limit_pts = keys[i + 1] if i + 1 < len(keys) else None
            # a key frame whose position the plan found (TS, PS) is opened at: a warm-up before it would instead seek
            # by timestamp to an earlier key frame not known, reading more than the warm-up, whatever the GOP
            long_gop = frames.gop_frames(keys[i]) >= LONG_GOP_WARMUPS * settings.warmup_frames
            if (
                (long_gop or keys[i] in index.key_positions)
                and shifted is not None
                and (limit_pts is None or shifted < limit_pts)
            ):
                starts[i], from_key[i] = shifted, True
    segments = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        if from_key[i]:  # the key frame itself, a quarter tick late: the reader's first frame is the key frame
            decode_from = float((keys[i] + Fraction(1, 4)) * tb - origin)
        else:
            warm = frames.before(start, settings.warmup_frames)
            decode_from = float((warm - Fraction(1, 4)) * tb - origin)  # a quarter tick early: float rounding keeps it
        if i == 0:
            decode_from = min(decode_from, 0.0)  # from the stream's start: the reader does not seek
        after = None if end is None else frames.after(end, settings.lookahead_frames)
        decode_until = None if after is None else float((after - Fraction(1, 2)) * tb - origin)
        at_byte = index.key_positions.get(keys[i]) if from_key[i] else None
        segments.append(Segment(i, start, end, decode_from, decode_until, frames.count(start, end), at_byte))
    return segments


class _Frames(Protocol):
    """Where a segment's warm-up starts and its look-ahead stops, and how many frames it emits."""

    def before(self, start: int, count: int) -> int:
        """The pts to decode from: ``count`` frames before ``start`` (or the first frame)."""
        ...

    def after(self, end: int, count: int) -> int | None:
        """The pts to stop decoding before: ``count`` frames from ``end`` on; None past the last frame."""
        ...

    def count(self, start: int, end: int | None) -> int: ...

    def nth(self, key: int, count: int) -> int | None:
        """Where emitting starts ``count`` frames after the key frame ``key`` (None: past the last frame)."""
        ...

    def gop_frames(self, key: int) -> float:
        """Frames from the key frame before ``key`` up to it (the GOP a warm-up before ``key`` would fall in)."""
        ...


class _IndexedFrames:
    """Every frame's pts is known: counts are exact."""

    def __init__(self, index: PacketIndex) -> None:
        self.pts = index.pts
        self.keyframes = index.keyframes

    def before(self, start: int, count: int) -> int:
        return self.pts[max(bisect.bisect_left(self.pts, start) - count, 0)]

    def after(self, end: int, count: int) -> int | None:
        after = bisect.bisect_left(self.pts, end) + count
        return self.pts[after] if after < len(self.pts) else None

    def count(self, start: int, end: int | None) -> int:
        stop = len(self.pts) if end is None else bisect.bisect_left(self.pts, end)
        return stop - bisect.bisect_left(self.pts, start)

    def nth(self, key: int, count: int) -> int | None:
        at = bisect.bisect_left(self.pts, key) + count
        return self.pts[at] if at < len(self.pts) else None

    def gop_frames(self, key: int) -> float:
        before = bisect.bisect_left(self.keyframes, key) - 1
        if before < 0:
            return 0.0
        return float(bisect.bisect_left(self.pts, key) - bisect.bisect_left(self.pts, self.keyframes[before]))


class _RateFrames:
    """Only key frames are known (cues, seeks): frames from the rate, one more each way to cover rounding.
    The emitted frames are exact whatever the rate says (they are the decoded frames with
    ``emit_start <= pts < emit_end``); only their count is estimated.

    Where the reader seeks without an index (``index.unindexed``: TS, PS) it seeks ``read_start.first_seek_margin`` (a
    few frames) before the window and decodes from the first key frame after where it lands (backing off a second,
    and more, if that is past the window's start). The segment's own key frame is known, and a GOP before it is
    likely another: the window starts half a frame after that one, so the seek lands just before it and the
    decode starts there, one GOP (the warm-up falls in) before the segment.
    """

    def __init__(self, index: PacketIndex) -> None:
        self.ticks = index.frame_ticks or Fraction(1)
        self.first = index.first
        self.last = index.end
        self.gop = index.gop if index.unindexed else 0
        self.keyframes = index.keyframes
        self.on_grid = not index.vfr  # frames at the nominal rate's pts (nth)
        self.widest = index.gop  # the widest key-frame interval seen by seeking (0: cues, or not measured)

    def before(self, start: int, count: int) -> int:
        warm = start - (count + 1) * self.ticks
        if self.gop > 0:  # half a frame past the key frame a whole number of GOPs back
            gops = max(math.ceil((start - warm + self.ticks / 2) / self.gop), 1)
            warm = min(warm, start - gops * self.gop + self.ticks / 2)
        return max(warm, self.first)

    def after(self, end: int, count: int) -> int | None:
        after = end + (count + 1) * self.ticks
        return None if self.last is not None and after >= self.last else after

    def count(self, start: int, end: int | None) -> int:
        stop = end if end is not None else (self.last if self.last is not None else start + self.ticks)
        return max(round((stop - start) / self.ticks), 0)

    def nth(self, key: int, count: int) -> int | None:
        # The frame ``count`` after ``key`` at the nominal rate, which must be a frame's pts: assembly takes a
        # segment's first frame to be at its ``emit_start``. So only where frames lie on whole ticks (TS: 3600 of
        # 90 kHz at 25 fps; not 24 fps in Matroska's milliseconds) at a constant rate, else None: the segment
        # stays on its key frame.
        shifted = key + count * self.ticks
        if not self.on_grid or shifted.denominator != 1 or (self.last is not None and shifted >= self.last):
            return None
        return int(shifted)

    def gop_frames(self, key: int) -> float:
        if self.widest > 0:  # seeks list one key frame a boundary: the interval is what the first seek measured
            return float(self.widest / self.ticks)
        at = bisect.bisect_left(self.keyframes, key)  # cues: the key frames (or cluster starts) they list
        return float((key - self.keyframes[at - 1]) / self.ticks) if at > 0 else 0.0


def expected_pts(index: PacketIndex, segments: list[Segment]) -> list[int]:
    """The source pts the assembled output must hold (every frame the segments emit; exact indexes only)."""
    first = segments[0].emit_start
    return [p for p in index.pts if p >= first]
