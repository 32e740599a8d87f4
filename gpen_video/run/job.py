"""What a restore run is asked to do: one input, one output, one configuration (and, for batch jobs, one
segment of the input). ``gpen_video.run.run_restore`` carries it out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpen_video.config import Config
from gpen_video.io.probe import MediaInfo
from gpen_video.restore.restorer import Restorer

ProgressCallback = Callable[[int], None]
#: what the input is: a video file, or an image sequence (or still); ``auto``: looked at when the job runs
JobKind = Literal["auto", "video", "sequence"]


@dataclass(frozen=True)
class SegmentWindow:
    """A piece of a long input, restored on its own for later assembly (batch jobs).

    Decoding starts at ``decode_from`` seconds (a key frame before the segment or, on a long GOP, the
    segment's own key frame, whose first frames are warm-up only: tracks and smoothing warm up) and stops
    at ``decode_until`` (some frames after, for the look-ahead); only frames with
    ``emit_start <= pts < emit_end`` (source time-base ticks) are restored and written. The segment file
    holds video only, at the source timestamps (no shift), so segments concatenate exactly; the side
    packets of its span go to a side file beside it, and assembly muxes them in. ``decode_from_byte``: where
    the key frame at ``decode_from`` begins in the file, where the plan found it (a TS or PS file's: the reader
    opens the file there instead of seeking).
    """

    decode_from: float
    emit_start: int
    emit_end: int | None
    decode_until: float | None = None
    decode_from_byte: int | None = None

    def emits(self, pts: int) -> bool:
        return pts >= self.emit_start and (self.emit_end is None or pts < self.emit_end)


@dataclass
class RestoreJob:
    """One input restored to one output under one configuration."""

    input: Path
    output: Path
    config: Config
    restorer: Restorer | None = None  # None: load config.restore.model
    progress: ProgressCallback | None = None
    info: MediaInfo | None = None
    segment: SegmentWindow | None = None
    encode_for: Path | None = None  # a segment: the final output, whose container the encode must suit
    kind: JobKind = "auto"  # decided once, by ``run.restore.restore_job``; batch segments and previews are videos


def planned_frames(info: MediaInfo, config: Config) -> int:
    """Frames a run over ``info`` with ``config``'s range will process (for progress bars)."""
    total = info.video.frame_count
    if config.start is None and config.duration is None:
        return total
    rate = float(info.video.frame_count / info.video.duration) if info.video.duration else 25.0
    remaining = max(info.video.duration - (config.start or 0.0), 0.0)
    seconds = remaining if config.duration is None else min(config.duration, remaining)
    return max(round(seconds * rate), 0)
