"""The unit of work an engine runs: restore one segment of one input into one segment file.

Tasks and their results are plain, picklable dataclasses, so the same code runs in-process (local
engine) and in a Ray worker; a worker keeps its restorers (one per model setting) for its lifetime,
so a model is loaded once per worker, not once per segment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from gpen_video.config import Config, RestoreConfig
from gpen_video.errors import GpenVideoError
from gpen_video.io.probe import MediaInfo
from gpen_video.io.side_packets import side_file_for
from gpen_video.jobs.assemble import pts_digest
from gpen_video.models.loader import load_restorer
from gpen_video.restore.restorer import Restorer
from gpen_video.run import RestoreJob, SegmentWindow, run_restore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentTask:
    key: str  # the input's job record
    index: int
    input: Path
    output: Path  # the segment file (.nut, in the job folder)
    config: Config
    window: SegmentWindow
    frames: int  # frames the segment emits (for progress; an estimate where the container has no index)
    info: MediaInfo | None = None  # the input's media info, probed once per job: a segment never probes again
    encode_for: Path | None = None  # the file's final output: segments are encoded for its container


@dataclass(frozen=True)
class SegmentDone:
    key: str
    index: int
    frames: int = 0
    size: int = 0
    seconds: float = 0.0
    error: str | None = None
    host: str = ""
    file: str = ""  # the segment file's name
    faces: int = 0  # faces restored
    side_file: str = ""  # its side-stream packets' file, where the run made one (side_packets.side_file_for)
    side_size: int = 0
    first_pts: int | None = None  # the source pts of its first frame (emit_start, unless no frame lies there)
    pts_digest: str = ""  # of the source pts written (assemble.pts_digest): assembly checks the file's packets by it
    node: str = ""  # the Ray node that restored it ("" in the local engine)


class RestorerCache:
    """Restorers by model setting: loaded on first use, kept for every later segment."""

    def __init__(self, device_override: str | None = None) -> None:
        self.device_override = device_override  # a Ray worker's device: the kind asked for, on its one GPU
        self._restorers: dict[tuple, Restorer] = {}

    def get(self, config: RestoreConfig) -> Restorer:
        device = self.device_override or config.device
        key = (config.model, device, config.precision, config.weights_dir, config.identity_size, config.compile)
        if key not in self._restorers:  # the pipeline's loader, but once per worker instead of once per segment
            self._restorers[key] = load_restorer(config, device=device)
            log.info("loaded restorer %s", self._restorers[key].name)
        return self._restorers[key]

    def close(self) -> None:
        for restorer in self._restorers.values():
            restorer.close()
        self._restorers.clear()


def execute_segment(
    task: SegmentTask, restorers: RestorerCache, progress: Callable[[int], None] | None = None
) -> SegmentDone:
    """Run one task; a user-facing failure comes back as ``error`` (the job records it and goes on)."""
    import platform

    t0 = time.perf_counter()
    side = side_file_for(Path(task.output))
    side.unlink(missing_ok=True)  # only this run's
    try:
        restorer = restorers.get(task.config.restore)
        report = run_restore(
            RestoreJob(
                task.input,
                task.output,
                task.config,
                restorer=restorer,
                progress=progress,
                info=task.info,
                encode_for=task.encode_for,
                segment=task.window,
            )
        )
    except GpenVideoError as exc:
        return SegmentDone(task.key, task.index, error=str(exc), host=platform.node())
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a bug or an FFmpeg failure on one file must not stop the job
        log.debug("segment %s/%d failed", task.key, task.index, exc_info=True)
        return SegmentDone(task.key, task.index, error=f"{type(exc).__name__}: {exc}", host=platform.node())
    size = Path(task.output).stat().st_size
    seconds = round(time.perf_counter() - t0, 3)
    first = report.first_frame_time
    tb = task.info.video.time_base if task.info is not None else None
    first_pts = round(first / Fraction(tb)) if first is not None and tb else None
    return SegmentDone(
        task.key,
        task.index,
        report.frames_written,
        size,
        seconds,
        host=platform.node(),
        file=Path(task.output).name,
        faces=report.faces.faces_restored if report.faces else 0,
        side_file=side.name if side.is_file() else "",
        side_size=side.stat().st_size if side.is_file() else 0,
        first_pts=first_pts,
        pts_digest=_written_digest(report.written_pts, report.written_time_base, tb),
    )


def _written_digest(pts: list[int], written_tb: Fraction | None, source_tb: Fraction | None) -> str:
    """The digest of the pts a segment's writer wrote, in source ticks ("" where they are not whole ticks)."""
    if not written_tb or not source_tb:
        return ""
    ticks = [p * written_tb / Fraction(source_tb) for p in pts]
    if any(t.denominator != 1 for t in ticks):
        return ""
    return pts_digest(int(t) for t in ticks)
