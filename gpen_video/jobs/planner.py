"""Cut a long input into segments that start on key frames, each restorable on its own.

The plan reads packets only (no decoding): every video packet's pts, and which are key frames. Key
frames are grouped into segments of about ``segment_seconds``; each segment emits the frames from
its key frame up to the next segment's, after decoding some frames before it (warm-up: tracks and
landmark smoothing settle, then those frames are dropped) and some after it (the faces stage's
look-ahead). The plan depends only on the input and the settings, so a resumed job gets exactly
the segments an uninterrupted one would, and their files can be reused.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.config import FacesConfig
from gpen_video.errors import InputError
from gpen_video.io.probe import MediaInfo, ffmpeg_reason, open_input
from gpen_video.pipeline import SegmentWindow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PacketIndex:
    """The video stream's packet timestamps (sorted pts), its key frames' pts, and each frame's duration."""

    pts: list[int]
    keyframes: list[int]
    time_base: Fraction
    durations: dict[int, int] = field(default_factory=dict)  # pts -> the source packet's duration (ticks)


@dataclass(frozen=True)
class Segment:
    """One planned piece: emits source frames ``emit_start <= pts < emit_end``."""

    index: int
    emit_start: int
    emit_end: int | None  # None: to the end of the file
    decode_from: float  # seconds; the reader seeks to the key frame at or before
    decode_until: float | None  # seconds; None: to the end
    frames: int  # frames emitted

    @property
    def window(self) -> SegmentWindow:
        return SegmentWindow(self.decode_from, self.emit_start, self.emit_end, self.decode_until)


@dataclass(frozen=True)
class PlanSettings:
    """What shapes a plan (part of the settings hash: change one and old segments are not reused)."""

    segment_seconds: float = 60.0
    warmup_frames: int = 16
    lookahead_frames: int = 24

    @classmethod
    def for_faces(cls, faces: FacesConfig, segment_seconds: float, overlap_frames: int | None = None) -> PlanSettings:
        """Look-ahead covering the faces stage's (smoothing window, gap, track length) plus a margin."""
        smooth = faces.smooth_window if faces.smooth else 0
        lookahead = max(smooth, faces.max_gap + 1, faces.min_track_length, 1) + max(faces.keyframe_interval, 8)
        warmup = lookahead if overlap_frames is None else overlap_frames
        return cls(float(segment_seconds), int(warmup), int(lookahead))


def index_packets(path: Path, info: MediaInfo) -> PacketIndex:
    """Demux (no decode) the main video stream: all pts, and the key frames' pts."""
    pts: list[int] = []
    keyframes: list[int] = []
    durations: dict[int, int] = {}
    with open_input(path) as container:
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
    return PacketIndex(pts, keyframes, time_base, durations)


def plan_segments(index: PacketIndex, settings: PlanSettings) -> list[Segment]:
    """Group key frames into segments of about ``settings.segment_seconds`` (short inputs: one segment)."""
    pts, tb = index.pts, index.time_base
    starts = [pts[0]]
    if settings.segment_seconds > 0:  # 0: the whole file is one segment
        limit = Fraction(settings.segment_seconds).limit_denominator(10**6) / tb  # in ticks
        for kf in index.keyframes:
            if kf - starts[-1] >= limit:
                starts.append(kf)
    segments = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        first = bisect.bisect_left(pts, start)
        stop = len(pts) if end is None else bisect.bisect_left(pts, end)
        warm = max(first - settings.warmup_frames, 0)
        decode_from = float((pts[warm] - Fraction(1, 4)) * tb)  # a quarter tick early: float rounding keeps it
        after = stop + settings.lookahead_frames
        decode_until = None if end is None or after >= len(pts) else float((pts[after] - Fraction(1, 2)) * tb)
        segments.append(Segment(i, start, end, decode_from, decode_until, stop - first))
    return segments


def expected_pts(index: PacketIndex, segments: list[Segment]) -> list[int]:
    """The source pts the assembled output must hold (every frame the segments emit)."""
    first = segments[0].emit_start
    return [p for p in index.pts if p >= first]
