"""Per-run report: what was read, what was written, what the faces stage did, and where time went.

Written as JSON with ``--report`` and summarised in one line at the end of every run, so a batch
operator can tell at a glance whether frames were lost, streams re-encoded or packets damaged.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpen_video import __version__
from gpen_video.config import Config
from gpen_video.io.encoding import EncodeSettings
from gpen_video.io.probe import MediaInfo
from gpen_video.io.reader import ReadStats
from gpen_video.io.writer import WriteResult


@dataclass
class StageTimes:
    """Busy seconds per stage (a stage's own work, not time spent waiting)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def bounding_stage(self) -> str | None:
        return max(self.seconds, key=self.seconds.__getitem__) if self.seconds else None


@dataclass
class RunReport:
    input: str
    output: str
    version: str
    restorer: str
    input_info: dict[str, Any]
    encode: dict[str, Any]
    config: dict[str, Any]
    started: float
    host: str = field(default_factory=platform.node)
    frames_read: int = 0
    frames_written: int = 0
    damaged_packets: int = 0
    corrupt_frames: int = 0
    streams: list[dict[str, Any]] = field(default_factory=list)
    faces: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    bounding_stage: str | None = None
    wall_seconds: float = 0.0
    fps: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def begin(
        cls, input: Path, output: Path, info: MediaInfo, settings: EncodeSettings, restorer: str, config: Config
    ) -> RunReport:
        return cls(
            input=str(input),
            output=str(output),
            version=__version__,
            restorer=restorer,
            input_info=info.to_dict(),
            encode={
                "codec": settings.codec,
                "pix_fmt": settings.pix_fmt,
                "options": settings.options,
                "reason": settings.reason,
            },
            config=config.to_dict(),
            started=time.time(),
        )

    def finish(self, read: ReadStats, result: WriteResult, faces: dict[str, Any], times: StageTimes) -> None:
        self.frames_read = read.frames
        self.frames_written = result.frames
        self.damaged_packets = read.damaged_packets
        self.corrupt_frames = read.corrupt_frames
        self.streams = [asdict(p) for p in result.streams]
        self.faces = faces
        self.stage_seconds = {k: round(v, 4) for k, v in times.seconds.items()}
        self.bounding_stage = times.bounding_stage()
        self.wall_seconds = round(time.time() - self.started, 3)
        self.fps = round(self.frames_written / self.wall_seconds, 3) if self.wall_seconds > 0 else 0.0
        if read.damaged_packets:
            self.warnings.append(
                f"{read.damaged_packets} damaged packet(s) skipped in the input ({read.first_error}); "
                "the frames they held are missing"
            )
        for plan in result.streams:
            if plan.action in ("encode", "drop"):
                self.warnings.append(f"stream #{plan.input_index} ({plan.type}, {plan.codec}): {plan.reason}")
        skipped = faces.get("skipped_faces", 0)
        if skipped:
            self.warnings.append(f"{skipped} face detection(s) skipped (too small or too profile to restore)")

    def summary(self) -> str:
        faces = self.faces.get("faces_restored", 0)
        tracks = len(self.faces.get("tracks", []))
        return (
            f"{self.frames_written}/{self.frames_read} frames, {faces} faces in {tracks} tracks, "
            f"{self.wall_seconds:.1f}s ({self.fps:.1f} fps), video {self.encode['codec']} {self.encode['pix_fmt']}"
            + (f", {len(self.warnings)} warning(s)" if self.warnings else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str), encoding="utf-8")
        tmp.replace(path)
