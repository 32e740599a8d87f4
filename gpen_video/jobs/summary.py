"""What a batch job did, file by file: restored, skipped as already done, or failed (and why).

Written as JSON into the job folder (and to ``--summary``) and shown as a table, so an operator of a
thousand-file job sees at once which files need attention and how much earlier work was reused.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpen_video.jobs.manifest import write_json_atomic


@dataclass
class FileOutcome:
    input: str
    output: str
    status: str = "pending"  # done | skipped | failed
    reason: str = ""
    error: str | None = None
    frames: int = 0
    faces_restored: int = 0
    segments: int = 0
    segments_reused: list[int] = field(default_factory=list)
    segments_computed: list[int] = field(default_factory=list)
    segment_nodes: dict[str, str] = field(default_factory=dict)  # segment index -> the Ray node that restored it
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class JobSummary:
    engine: str
    job_dir: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def counts(self) -> dict[str, int]:
        counts = {"done": 0, "skipped": 0, "failed": 0}
        for f in self.files:
            counts[f.status] = counts.get(f.status, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = self.counts()
        data["wall_seconds"] = round((self.finished or time.time()) - self.started, 3)
        return data

    def write(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict())

    def table(self) -> str:
        """A plain-text table: one row per file, then the totals."""
        rows = [("status", "frames", "segments", "seconds", "file", "note")]
        for f in self.files:
            segs = f"{len(f.segments_computed)} new/{len(f.segments_reused)} reused" if f.segments else "-"
            note = f.error or f.reason
            rows.append((f.status, str(f.frames), segs, f"{f.seconds:.1f}", f.input, note))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:5], widths, strict=True)) + "  " + r[5] for r in rows]
        c = self.counts()
        lines.append(f"{len(self.files)} file(s): {c['done']} restored, {c['skipped']} skipped, {c['failed']} failed")
        return "\n".join(line.rstrip() for line in lines)
