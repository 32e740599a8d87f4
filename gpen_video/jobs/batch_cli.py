"""``gpen-video batch``: many files, resumable, on this machine or a Ray cluster.

Exit codes: 0 every file restored (or already done), 1 some files failed (named on stderr and in the
summary), 2 a bad command line or inputs (one line, from ``GpenVideoError``), 130 interrupted (run
the same command again to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpen_video.config import JobSettings, add_flags, config_from_flags, job_settings_from_flags
from gpen_video.errors import ConfigError, OutputError

if TYPE_CHECKING:  # the job's modules load av and the pipeline: not needed to build the CLI's parser
    from gpen_video.config import Config
    from gpen_video.jobs.inputs import BatchItem
    from gpen_video.jobs.runner import Engine
    from gpen_video.jobs.summary import FileOutcome

log = logging.getLogger(__name__)

EXIT_SOME_FAILED = 1
EXIT_INTERRUPTED = 130


def add_parser(sub: Any, add_run_options: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    p = sub.add_parser("batch", help="restore many files; resumes after a crash; runs locally or on Ray")
    p.add_argument("inputs", nargs="+", help="video files, folders (recursive) or .txt/.csv/.jsonl manifests")
    p.add_argument("-o", "--output-dir", type=Path, required=True, help="outputs mirror the input tree here")
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reuse finished outputs and segments of an earlier run of this job (default: on)",
    )
    p.add_argument("--retry-failed", action="store_true", help="try again files that failed in an earlier run")
    add_flags(p, JobSettings)  # --engine, --address, --workers, --segment-seconds, --overlap-frames
    p.add_argument("--job-dir", type=Path, help="manifest and segment files (default: OUTPUT_DIR/.gpen-video-job)")
    p.add_argument("--summary", type=Path, help="also write the job summary (JSON) here")
    add_run_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the job; 0 all succeeded, 1 some failed."""
    config = config_from_flags(args.config, vars(args))  # a bad option is answered before the pipeline's imports
    settings = job_settings_from_flags(vars(args))
    _refuse_options(config)
    from gpen_video.jobs.inputs import discover
    from gpen_video.jobs.runner import BatchJob, JobOptions

    output_dir: Path = args.output_dir
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"{output_dir}: is a file; -o takes a folder")
    options = JobOptions(
        output_dir=output_dir,
        job_dir=args.job_dir,
        resume=args.resume,
        retry_failed=args.retry_failed,
        segment_seconds=settings.segment_seconds,
        overlap_frames=settings.overlap_frames,
        overwrite=config.output.overwrite,
    )
    items = discover(args.inputs, output_dir, exclude=[options.job_folder])
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{output_dir}: cannot create the output folder ({exc})") from exc
    bars = _Bars(len(items), disable=True if args.quiet else None)
    engine = _make_engine(settings, config, bars)
    job = BatchJob(items, config, options, engine, bars)
    try:
        summary = job.run()
    except KeyboardInterrupt:
        bars.close()
        done = sum(1 for f in job.summary.files if f.status in ("done", "skipped"))
        print(
            f"gpen-video: interrupted; {done} file(s) finished; run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        engine.close()
        bars.close()
    for path in (args.summary, getattr(args, "report", None)):
        if path:
            summary.write(Path(path))
    if not args.quiet:
        print(summary.table())
    for outcome in summary.files:
        for warning in outcome.warnings:
            log.warning("%s: %s", outcome.input, warning)
    if summary.failed:
        names = ", ".join(f.input for f in summary.failed[:5]) + (" ..." if len(summary.failed) > 5 else "")
        print(
            f"gpen-video: {len(summary.failed)} of {len(summary.files)} file(s) failed: {names} "
            f"(details: {options.job_folder / 'summary.json'})",
            file=sys.stderr,
        )
        return EXIT_SOME_FAILED
    return 0


def _refuse_options(config: Config) -> None:
    """Options a batch of whole video files cannot honour, refused before any work."""
    from gpen_video.run.options import refuse_for_video

    if config.start is not None or config.duration is not None:
        raise ConfigError("--start/--duration are for restore and preview; a batch job restores whole files")
    refuse_for_video(config)


def _make_engine(settings: JobSettings, config: Any, bars: _Bars) -> Engine:
    if settings.engine == "ray":
        from gpen_video.jobs.engine_ray import RayEngine, import_ray

        import_ray()  # the one-line install hint before anything else happens
        return RayEngine(config, address=settings.address, workers=settings.workers)
    from gpen_video.jobs.engine_local import LocalEngine

    return LocalEngine(on_frames=bars.frames)


class _Bars:
    """Two tqdm bars: files of the job, and frames of the file(s) in progress (the runner's JobEvents)."""

    def __init__(self, files: int, disable: bool | None) -> None:
        from tqdm import tqdm

        self.file_bar = tqdm(total=files, unit="file", position=0, disable=disable, dynamic_ncols=True)
        self.frame_bar = tqdm(total=0, unit="frame", position=1, disable=disable, dynamic_ncols=True, leave=False)
        self.active: dict[str, list[int]] = {}  # key -> [done, total]
        self.names: dict[str, str] = {}

    def file_started(self, item: BatchItem, frames_total: int, frames_done: int) -> None:
        self.active[item.key] = [frames_done, frames_total]
        self.names[item.key] = item.input.name
        self._shift(frames_done)  # a resumed file's frames are done already: not counted in the rate
        self._refresh()

    def frames(self, key: str, count: int) -> None:
        if key in self.active:
            self.active[key][0] += count
            self._refresh()
            self.frame_bar.update(count)  # through update, so tqdm measures the rate and shows the ETA

    def file_finished(self, item: BatchItem, outcome: FileOutcome) -> None:
        done, _ = self.active.pop(item.key, [0, 0])
        self._shift(-done)
        self.file_bar.update(1)
        self._refresh()

    def _shift(self, frames: int) -> None:
        """Move the frame bar's count without a rate sample (a file joining or leaving the bar)."""
        self.frame_bar.n += frames
        if not self.frame_bar.disable:  # a disabled bar (-q, no terminal) keeps no rate state
            self.frame_bar.last_print_n += frames

    def _refresh(self) -> None:
        bar = self.frame_bar
        bar.total = sum(t for _, t in self.active.values())
        bar.set_description(", ".join(self.names[k] for k in self.active)[:40] or "frames")
        bar.refresh()

    def close(self) -> None:
        self.frame_bar.close()
        self.file_bar.close()
