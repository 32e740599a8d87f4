"""Cut a long input into segments that start on key frames, each restorable on its own.

The plan never reads the input through: it groups the key frames ``packet_index`` found into segments of about
``segment_seconds``. Where the container lists every frame the counts are exact; elsewhere the frames in between are
counted from the frame rate (an estimate: segments still tile the file exactly, since a segment emits the frames
``emit_start <= pts < emit_end``, whatever their number). Each segment emits the frames from
its key frame up to the next segment's, after decoding some frames before it (warm-up: tracks and
landmark smoothing settle, then those frames are dropped) and some after it (the faces stage's
look-ahead). With long GOPs (``PlanSettings.emit_after_key``, as batch jobs plan) a segment instead decodes
from its key frame and emits from the end of its warm-up there, so no GOP before it is read again; so does a
segment of a TS or PS plan whatever its GOP, whose key frame's byte position the seeks found: the segment's
reader opens the file at its key frame, without a seek (``SegmentWindow.decode_from_byte``; not at a rate whose frames
fall between the time base's ticks, such as 23.976 fps in 90 kHz, where those segments keep the seek). The plan
depends only on the input and the settings, so a resumed job gets exactly the segments an uninterrupted one
would, and their files can be reused.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

from gpen_video.config import FacesConfig
from gpen_video.faces.stage import WarmStart, lookahead_frames, warm_start
from gpen_video.jobs.packet_index import REORDER_FRAMES, PacketIndex
from gpen_video.run.job import SegmentWindow

# A GOP is long (PlanSettings.emit_after_key) from this many warm-ups: cutting after the warm-up then saves at least
# a warm-up's frames per boundary. Shorter GOPs (and all-intra) keep cuts on key frames (the look-ahead plays no
# part), except where the plan found the key frame's byte position (TS, PS): those cut after the warm-up too.
LONG_GOP_WARMUPS = 2


@dataclass(frozen=True)
class Segment:
    """One planned piece: its window (decodes from, emits source frames ``emit_start <= pts < emit_end``) and the
    frames it emits. Its bounds read through to the window."""

    index: int
    window: SegmentWindow
    frames: int  # frames emitted

    @property
    def emit_start(self) -> int:
        return self.window.emit_start

    @property
    def emit_end(self) -> int | None:
        """None: to the end of the file."""
        return self.window.emit_end

    @property
    def decode_from(self) -> float:
        """Seconds; the reader seeks to the key frame at or before."""
        return self.window.decode_from

    @property
    def decode_until(self) -> float | None:
        """Seconds; None: to the end."""
        return self.window.decode_until

    @property
    def decode_from_byte(self) -> int | None:
        """Where the key frame it decodes from begins, where the plan found it."""
        return self.window.decode_from_byte


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
    # the faces stage's sync frames: a segment decodes from the warm start before its first frame (at least
    # ``warmup_frames`` before it), so the frames it emits get the faces one run over the whole file gives them
    warm: WarmStart = field(default_factory=lambda: WarmStart(0.0, 0, 0, 0))

    @classmethod
    def for_faces(
        cls, faces: FacesConfig, segment_seconds: float, overlap_frames: int | None = None, context_frames: int = 0
    ) -> PlanSettings:
        """The faces stage's overlap: what a segment must decode around the frames it emits so that they come
        out as in one run over the whole file.

        - Look-ahead: the faces stage releases a frame once ``FaceStage.lookahead`` newer frames are in
          (smoothing window, gap bridging, track length, the candidates' second look); a released frame is
          final, so decoding more after the segment's last frame changes nothing it emits.
        - Warm-up (``overlap_frames``, by default): the smoothing window's (or a bridged gap's) past, and a
          key-frame interval for the tracks found by the first full detection to be seen by a second one.
        - ``context_frames`` (``Config.context_frames``: fusion's neighbours, the guard's ramp under protect): a
          frame's picture reads that many frames either side, so both widen by it.
        """
        smooth = faces.smooth_window if faces.smooth else 0
        reach = max(smooth, faces.max_gap + 1, faces.min_track_length, 1)
        lookahead = lookahead_frames(faces, context_frames)  # FaceStage.lookahead, then fusion and the guard
        warmup = reach + max(faces.keyframe_interval, 8) + context_frames if overlap_frames is None else overlap_frames
        return cls(float(segment_seconds), int(warmup), int(lookahead), warm=warm_start(faces, context_frames))


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
    starts, from_key = _key_starts(index, settings, frames, keys)
    segments = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        if from_key[i]:  # the key frame itself, a quarter tick late: the reader's first frame is the key frame
            decode_from = float((keys[i] + Fraction(1, 4)) * tb - origin)
        else:
            warm = frames.before(start, settings.warmup_frames)
            if i > 0:
                warm = min(warm, _synced_from(index, settings, frames, start))
            decode_from = float((warm - Fraction(1, 4)) * tb - origin)  # a quarter tick early: float rounding keeps it
        if i == 0:
            decode_from = min(decode_from, 0.0)  # from the stream's start: the reader does not seek
        after = None if end is None else frames.after(end, settings.lookahead_frames)
        decode_until = None if after is None else float((after - Fraction(1, 2)) * tb - origin)
        at_byte = index.key_positions.get(keys[i]) if from_key[i] else None
        window = SegmentWindow(decode_from, start, end, decode_until, at_byte)
        segments.append(Segment(i, window, frames.count(start, end)))
    return segments


def _key_starts(
    index: PacketIndex, settings: PlanSettings, frames: _Frames, keys: list[int]
) -> tuple[list[int], list[bool]]:
    """Where each segment starts emitting, and whether it decodes from its own key frame (``emit_after_key``)."""
    starts: list[int] = list(keys)
    from_key: list[bool] = [False] * len(keys)
    if settings.emit_after_key:
        for i in range(1, len(keys)):
            shifted = _first_synced(index, settings, frames, keys[i])
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
    return starts, from_key


def _first_synced(index: PacketIndex, settings: PlanSettings, frames: _Frames, key: int) -> int | None:
    """The first frame ``warmup_frames`` or more after the key frame ``key`` whose sync warm-up starts at or after
    it (``_sync_need``), so that decoding from ``key`` is enough; None: no such frame is known."""
    ticks = _frame_ticks(index)
    count = settings.warmup_frames
    warm = settings.warm
    if warm.sync_seconds > 0:  # the sync frame after the key frame's scene-cut history, then its settling
        frame = float(ticks * index.time_base) * 1.01
        sync = math.ceil((float(key * index.time_base) + warm.history_frames * frame) / warm.sync_seconds)
        settled = sync * warm.sync_seconds + warm.settle_frames * frame
        count = max(count, math.ceil((settled - float(key * index.time_base)) / float(ticks * index.time_base)))
    for _ in range(8):  # float rounding at the edges: a frame more
        shifted = frames.nth(key, count)
        if shifted is None or _sync_need(index, settings, shifted) >= key:
            return shifted
        count += 1
    return None


def _sync_need(index: PacketIndex, settings: PlanSettings, start: int) -> int:
    """The pts the faces stage's sync frames need decoded for a segment emitting from ``start`` (``WarmStart``)."""
    if settings.warm.sync_seconds <= 0:
        return start
    tb = index.time_base
    at = settings.warm.before(float(start * tb), float(_frame_ticks(index) * tb) * 1.01)
    return min(math.floor(Fraction(at).limit_denominator(10**9) / tb), start)


def _synced_from(index: PacketIndex, settings: PlanSettings, frames: _Frames, start: int) -> int:
    """The pts a segment emitting from ``start`` decodes from for the faces stage's sync frames."""
    need = _sync_need(index, settings, start)
    return start if need >= start else min(frames.before(need, 1), start)


def _frame_ticks(index: PacketIndex) -> Fraction:
    """A frame's duration in ticks: the nominal one, or the widest of the first frames' steps."""
    if index.frame_ticks:
        return Fraction(index.frame_ticks)
    steps = [b - a for a, b in zip(index.pts[:64], index.pts[1:65], strict=False) if b > a]
    return Fraction(max(steps)) if steps else Fraction(1)


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
