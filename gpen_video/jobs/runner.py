"""The batch job: plan each input, run its unfinished segments on an engine, assemble, record.

One driver owns the job folder: it probes and plans each file once (from the container's index, cues
or seeks: the file is not read through), keeps the media info in the file's record and hands it to
every segment task (no segment probes again), decides what earlier work can be
reused, hands segment tasks to the engine (in-process or Ray), records every finished segment
atomically, and assembles a file as soon as its last segment is in. A failed file is recorded with
its reason and the job goes on. Engines only run tasks; they never touch the manifest, so resume
works the same whichever engine ran the earlier attempt.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import shutil
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import av

from gpen_video.config import Config, load_config
from gpen_video.errors import GpenVideoError, InputError, OutputError
from gpen_video.io.containers import SEGMENT_CONTAINERS
from gpen_video.io.encoding import choose_encoding
from gpen_video.io.formats import output_caps
from gpen_video.io.output import remove_stale_partials, verify_video
from gpen_video.io.plan import SpaceNeed, check_encoder_opens, check_free_space, estimate_output_bytes
from gpen_video.io.probe import MediaInfo, probe
from gpen_video.io.writer import check_video_codec
from gpen_video.jobs.assemble import SegmentCheck, SegmentDamaged, assemble
from gpen_video.jobs.inputs import BatchItem
from gpen_video.jobs.manifest import FileRecord, InputIdentity, JobStore, SegmentRecord, settings_hash
from gpen_video.jobs.packet_index import PacketIndex, index_packets
from gpen_video.jobs.planner import PlanSettings, Segment, plan_segments
from gpen_video.jobs.summary import FileOutcome, JobSummary
from gpen_video.jobs.tasks import SegmentDone, SegmentTask
from gpen_video.run.field_order import output_info, with_field_check
from gpen_video.run.sinks import aspect_binary

log = logging.getLogger(__name__)

SPACE_MARGIN = 64 << 20  # bytes kept free beyond the estimate


@dataclass
class JobOptions:
    output_dir: Path
    job_dir: Path | None = None  # default: OUTPUT_DIR/.gpen-video-job
    resume: bool = True
    retry_failed: bool = False
    segment_seconds: float = 60.0
    overlap_frames: int | None = None  # None: the faces stage's look-ahead
    overwrite: bool = False  # replace outputs this job did not write

    @property
    def job_folder(self) -> Path:
        return self.job_dir or self.output_dir / ".gpen-video-job"


class Engine(Protocol):
    name: str
    capacity: int

    def submit(self, task: SegmentTask) -> None: ...

    def in_flight(self) -> int: ...

    def next_done(self) -> SegmentDone: ...

    def reports_frames(self) -> bool: ...

    def close(self) -> None: ...


class JobEvents:
    """Progress hooks (the CLI draws bars with them); every method is optional."""

    def file_started(self, item: BatchItem, frames_total: int, frames_done: int) -> None:
        """A file's work begins; ``frames_done`` were reused from an earlier run."""

    def frames(self, key: str, count: int) -> None:
        """``count`` more frames of file ``key`` are restored."""

    def file_finished(self, item: BatchItem, outcome: FileOutcome) -> None:
        """A file is restored, skipped or failed."""


@dataclass
class _FileRun:
    item: BatchItem
    config: Config
    info: MediaInfo
    index: PacketIndex
    segments: list[Segment]
    record: FileRecord
    outcome: FileOutcome
    started: float
    work_dir: Path
    tasks: list[SegmentTask] = field(default_factory=list)
    pending: set[int] = field(default_factory=set)
    failed: bool = False


@dataclass(frozen=True)
class _EarlierRun:
    """What the job folder holds for an input from earlier runs, judged against this run."""

    record: FileRecord | None
    identity: InputIdentity
    settings: str  # this run's settings hash
    reusable: bool  # --resume, and the record is of this input under these settings: its finished work counts
    wrote_output: bool  # the record's output was restored by this job and is still as it was written


def config_with(config: Config, overrides: dict[str, Any]) -> Config:
    """``config`` with a manifest row's per-file settings (dotted names) applied."""
    if not overrides:
        return copy.deepcopy(config)
    flat = _flatten(config.to_dict())
    flat.update(overrides)
    return load_config(None, flat)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class BatchJob:
    """Runs ``items`` under ``config`` with ``engine``; ``run()`` returns the summary."""

    def __init__(
        self,
        items: list[BatchItem],
        config: Config,
        options: JobOptions,
        engine: Engine,
        events: JobEvents | None = None,
    ) -> None:
        self.items = items
        self.config = config
        self.options = options
        self.engine = engine
        self.events = events or JobEvents()
        self.store = JobStore(options.job_folder)
        self.summary = JobSummary(engine=engine.name, job_dir=str(options.job_folder))
        self._runs: dict[str, _FileRun] = {}

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> JobSummary:
        """Run every file; a file's failure is recorded in the summary, never raised."""
        with self.store.lock():
            try:
                self._loop()
            finally:
                self.summary.finished = time.time()
                self.summary.write(self.store.root / "summary.json")
        return self.summary

    def _loop(self) -> None:
        queue: deque[SegmentTask] = deque()
        items = iter(self.items)
        exhausted = False
        while True:
            while self.engine.in_flight() < self.engine.capacity and (queue or not exhausted):
                if queue:
                    task = queue.popleft()
                    if not self._runs[task.key].failed:
                        self.engine.submit(task)
                    continue
                item = next(items, None)
                if item is None:
                    exhausted = True
                    break
                run = self._start(item)
                if run is not None:
                    queue.extend(run.tasks)
            if self.engine.in_flight() == 0:
                return
            self._segment_done(self.engine.next_done())

    # -- starting a file --------------------------------------------------------------------------
    def _start(self, item: BatchItem) -> _FileRun | None:
        outcome = FileOutcome(str(item.input), str(item.output))
        self.summary.files.append(outcome)
        started = time.time()
        try:
            run = self._plan(item, outcome, started)
        except GpenVideoError as exc:
            self._fail(item, outcome, str(exc), started, sticky=not isinstance(exc, OutputError))
            return None
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # an unexpected failure on one file must not end the job
            log.debug("%s: planning failed", item.input, exc_info=True)
            self._fail(item, outcome, f"{type(exc).__name__}: {exc}", started)
            return None
        if run is None:
            self.events.file_finished(item, outcome)
            return None
        self._runs[item.key] = run
        if not run.tasks:  # every segment reused from an earlier run
            self._assemble(run)
            return None
        return run

    def _plan(self, item: BatchItem, outcome: FileOutcome, started: float) -> _FileRun | None:
        """Decide what to do with one input; None when there is nothing to do (skipped)."""
        config = config_with(self.config, item.overrides)
        plan_settings = _plan_settings(config, self.options)
        earlier = self._earlier_run(item, config, plan_settings)
        if self._settled(earlier, outcome):
            return None
        record = self._new_record(item, earlier)
        info = with_field_check(probe(item.input), config)  # untagged fields judged once, for every segment
        index = index_packets(item.input, info, self.options.segment_seconds)
        if self._made_elsewhere(item, earlier, index, outcome):
            return None
        segments = plan_segments(index, plan_settings)
        estimate, codec = self._check_output(item, info, config)
        remove_stale_partials(item.output)  # temporary outputs of killed runs to this output
        work_dir = self.store.work_dir(item.key)
        reused = self._keep_reusable(record, segments, work_dir)
        todo = [s for s in segments if s.index not in reused]
        total = sum(s.frames for s in segments)
        remaining = sum(s.frames for s in todo)
        self._check_space(item, work_dir, estimate * remaining // max(total, 1), estimate)
        record.status, record.attempts, record.segments_planned = "running", record.attempts + 1, len(segments)
        record.media, record.index_source, record.frames_planned = info.to_dict(), index.source, index.frame_count
        self.store.save(record)
        outcome.segments, outcome.segments_reused = len(segments), sorted(reused)
        run = _FileRun(item, config, info, index, segments, record, outcome, started, work_dir)
        run.tasks = _segment_tasks(run, todo, segment_suffix(codec))
        run.pending = {s.index for s in todo}
        if reused:
            log.info("%s: reusing %d of %d segment(s) from an earlier run", item.input, len(reused), len(segments))
        self.events.file_started(item, total, total - remaining)
        return run

    def _earlier_run(self, item: BatchItem, config: Config, plan_settings: PlanSettings) -> _EarlierRun:
        """The input's identity and this run's settings hash, against the job folder's record of earlier runs."""
        try:
            identity = InputIdentity.of(item.input)
        except OSError as exc:
            raise InputError(f"{item.input}: cannot be read ({exc.strerror or exc})") from exc
        settings = settings_hash(config, asdict(plan_settings))
        old = self.store.load(item.key)
        current = old is not None and old.matches(identity, settings)
        wrote_output = old is not None and old.status == "done" and old.output_intact()
        return _EarlierRun(old, identity, settings, self.options.resume and current, wrote_output)

    def _settled(self, earlier: _EarlierRun, outcome: FileOutcome) -> bool:
        """Resume: a file an earlier run restored, or failed on for the input's fault, is not run again."""
        old = earlier.record
        if not earlier.reusable or old is None:
            return False
        if old.status == "done" and old.output_intact():
            outcome.status, outcome.reason, outcome.frames = "skipped", "already restored", old.frames
            return True
        if old.status == "failed" and old.sticky and not self.options.retry_failed:
            outcome.status = "failed"
            outcome.error = f"failed in an earlier run ({old.error}); pass --retry-failed to try it again"
            return True
        return False

    def _new_record(self, item: BatchItem, earlier: _EarlierRun) -> FileRecord:
        """This run's record of the input, with the earlier run's finished segments and attempts where they count."""
        old = earlier.record
        if old is not None and old.segments and not earlier.reusable:
            why = "--resume is off" if not self.options.resume else _mismatch(old, earlier.identity, earlier.settings)
            log.info("%s: not reusing %d finished segment(s): %s", item.input, len(old.segments), why)
        record = FileRecord(item.key, str(item.input), str(item.output))
        if earlier.reusable and old is not None:
            record.segments, record.attempts = old.segments, old.attempts
        record.identity, record.settings = asdict(earlier.identity), earlier.settings
        return record

    def _made_elsewhere(self, item: BatchItem, earlier: _EarlierRun, index: PacketIndex, outcome: FileOutcome) -> bool:
        """An output this job did not write is refused without --overwrite; True (skipped) where, on resume with no
        record, it holds every frame of the input."""
        if not item.output.exists() or earlier.wrote_output or self.options.overwrite:
            return False
        if self.options.resume and earlier.record is None and _complete(item.output, index):
            outcome.status, outcome.frames = "skipped", index.frame_count
            outcome.reason = "output exists and holds every frame (made outside this job; settings unknown)"
            return True
        raise OutputError(f"{item.output}: already exists and was not written by this job; pass --overwrite")

    def _keep_reusable(self, record: FileRecord, segments: list[Segment], work_dir: Path) -> set[int]:
        """Keep the recorded segments this plan can reuse; drop the others' records and every unrecorded file."""
        reused = self._reusable_segments(record, segments, work_dir)
        record.segments = {str(i): record.segments[str(i)] for i in reused}
        kept = list(record.segments.values())
        _clean_work_dir(work_dir, {r.file for r in kept} | {r.side_file for r in kept if r.side_file})
        return reused

    def _reusable_segments(self, record: FileRecord, segments: list[Segment], work_dir: Path) -> set[int]:
        reused = set()
        for seg in segments:
            done = record.segments.get(str(seg.index))
            if done is None:
                continue
            if done.window != seg.window:
                log.info("segment %d: planned %s now, %s before; recomputing it", seg.index, seg.window, done.window)
                continue
            path = work_dir / done.file
            side = work_dir / done.side_file if done.side_file else None
            side_kept = side is None or (side.is_file() and side.stat().st_size == done.side_size)
            if path.is_file() and path.stat().st_size == done.size and side_kept:
                reused.add(seg.index)
            else:
                log.info("segment %d: %s is missing or not the recorded %d bytes; recomputing it", seg.index,
                         path, done.size)  # fmt: skip
        return reused

    def _check_output(self, item: BatchItem, info: MediaInfo, config: Config) -> tuple[int, str | None]:
        """Refuse a codec the output container cannot hold; return the output's estimated size and codec."""
        try:
            item.output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{item.output.parent}: cannot create the output folder ({exc})") from exc
        if config.output.encoder_backend != "pyav":
            return estimate_output_bytes(info, None), None
        caps = output_caps(item.output)  # the segments are encoded for this container (SegmentTask.encode_for)
        settings = choose_encoding(info.video, config.output, caps=caps)
        check_video_codec(caps, settings.codec, item.output.suffix)
        check_encoder_opens(info, settings)
        aspect_binary(item.output, output_info(info, config), settings)  # a field order or aspect it would lose
        return estimate_output_bytes(info, settings.codec), settings.codec

    def _check_space(self, item: BatchItem, work_dir: Path, segment_bytes: int, output_bytes: int) -> None:
        """Fail this file now, not hours later, if its segments and output cannot fit."""
        work_dir.mkdir(parents=True, exist_ok=True)
        needs = [SpaceNeed(work_dir, segment_bytes), SpaceNeed(item.output.parent, output_bytes)]
        advice = "free some space or put the job folder (--job-dir) or the outputs on another disk"
        check_free_space(item.input, needs, advice, SPACE_MARGIN)

    # -- segments coming back ---------------------------------------------------------------------
    def _segment_done(self, done: SegmentDone) -> None:
        run = self._runs[done.key]
        if done.error:
            if not run.failed:
                self._fail_run(run, f"segment {done.index}: {done.error}")
            return
        seg = run.segments[done.index]
        run.record.segments[str(done.index)] = SegmentRecord(
            seg.index, seg.window, done.file, done.frames, done.size, done.faces, done.side_file, done.side_size,
            done.first_pts, done.pts_digest,
        )  # fmt: skip
        self.store.save(run.record)  # the segment is durable: a crash from here on keeps it
        run.pending.discard(done.index)
        run.outcome.segments_computed.append(done.index)
        if done.node:
            run.outcome.segment_nodes[str(done.index)] = done.node
        if done.frames != seg.frames and run.index.exact:  # with cues or seeks the count is an estimate
            run.outcome.warnings.append(f"segment {done.index}: {done.frames} of {seg.frames} frames could be decoded")
        if not self.engine.reports_frames():
            self.events.frames(done.key, done.frames)
        if not run.pending and not run.failed:
            self._assemble(run)

    def _assemble(self, run: _FileRun) -> None:
        record, outcome = run.record, run.outcome
        try:
            kept = [record.segments[str(s.index)] for s in run.segments]
            files = [run.work_dir / k.file for k in kept]
            # where each segment file's first frame lies: its planned start, unless no source frame lay there (a
            # frame dropped at a cut, or timestamps off the rate's grid) and the segment began at the next one
            starts = [k.first_pts if k.first_pts is not None else k.window.emit_start for k in kept]
            recorded = [k.side_file for k in kept]
            # side packets from the segments' side files where every segment made one (and assembly finds them
            # whole), else from the input
            side_files = [run.work_dir / name for name in recorded] if all(recorded) else None
            checks = [SegmentCheck(k.frames, k.pts_digest) for k in kept]  # each segment's file is checked by them
            video_out = output_info(run.info, run.config).video  # the field order and aspect segments were made with
            result = assemble(run.info, files, starts, run.item.output, run.index.durations, run.index.pts,
                              side_files, checks, video_out)  # fmt: skip
        except SegmentDamaged as exc:  # forgotten, so the next run restores it anew
            run.record.segments.pop(str(run.segments[exc.index].index), None)
            self._fail_run(run, f"{exc}; run the batch again to restore that segment anew", sticky=False)
            return
        except GpenVideoError as exc:
            self._fail_run(run, str(exc), sticky=not isinstance(exc, OutputError))
            return
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            log.debug("%s: assembly failed", run.item.output, exc_info=True)
            self._fail_run(run, f"{type(exc).__name__}: {exc}")
            return
        stat = run.item.output.stat()
        record.status, record.error, record.frames = "done", None, result.frames
        record.output_size, record.output_mtime_ns = stat.st_size, stat.st_mtime_ns
        self.store.save(record)
        shutil.rmtree(run.work_dir, ignore_errors=True)  # the output is safe: segments are no longer needed
        outcome.status, outcome.frames = "done", result.frames
        outcome.faces_restored = sum(record.segments[str(s.index)].faces for s in run.segments)
        outcome.reason = "restored"
        outcome.warnings += _frame_count_warnings(run.index, result.frames)
        if run.info.missing_frames:
            outcome.warnings.append(f"the input is truncated: its index lists {run.info.missing_frames} more frame(s)")
        outcome.warnings += [f"stream #{p.input_index} ({p.type}): {p.reason}" for p in result.streams if p.reason]
        outcome.segments_computed.sort()
        outcome.seconds = round(time.time() - run.started, 3)
        self._runs.pop(run.item.key, None)  # its packet index can go: thousands of files must not pile up
        self.events.file_finished(run.item, outcome)

    # -- failures ---------------------------------------------------------------------------------
    def _fail_run(self, run: _FileRun, error: str, sticky: bool = True) -> None:
        run.failed = True
        run.record.status, run.record.error, run.record.sticky = "failed", error, sticky
        self.store.save(run.record)
        run.outcome.status, run.outcome.error = "failed", error
        run.outcome.seconds = round(time.time() - run.started, 3)
        log.warning("%s", _with_path(run.item.input, error))
        self.events.file_finished(run.item, run.outcome)

    def _fail(self, item: BatchItem, outcome: FileOutcome, error: str, started: float, sticky: bool = True) -> None:
        """Record a file's failure; a sticky one (the input's fault) is not retried without --retry-failed."""
        record = self.store.load(item.key) or FileRecord(item.key, str(item.input), str(item.output))
        with contextlib.suppress(OSError):
            config = config_with(self.config, item.overrides)
            plan = _plan_settings(config, self.options)
            record.identity = asdict(InputIdentity.of(item.input))
            record.settings = settings_hash(config, asdict(plan))
        record.status, record.error, record.sticky = "failed", error, sticky
        record.attempts += 1
        self.store.save(record)
        outcome.status, outcome.error = "failed", error
        outcome.seconds = round(time.time() - started, 3)
        log.warning("%s", _with_path(item.input, error))
        self.events.file_finished(item, outcome)


def _segment_tasks(run: _FileRun, todo: list[Segment], suffix: str) -> list[SegmentTask]:
    """A task for each segment still to restore, each to its own file in the file's work folder."""
    item = run.item
    segment_config = _segment_config(run.config)
    source = item.input.resolve()  # absolute: Ray workers on other nodes have another working folder
    tasks = []
    for seg in todo:
        path = run.work_dir / _segment_name(seg.index, suffix)
        tasks.append(
            SegmentTask(
                item.key, seg.index, source, path, segment_config, seg.window, seg.frames, run.info, item.output
            )
        )
    return tasks


def _plan_settings(config: Config, options: JobOptions) -> PlanSettings:
    """The faces stage's overlap; long-GOP segments emit from their warm-up's end (``PlanSettings.emit_after_key``)."""
    settings = PlanSettings.for_faces(
        config.faces, options.segment_seconds, options.overlap_frames, config.context_frames()
    )
    return replace(settings, emit_after_key=True)


def _frame_count_warnings(index: PacketIndex, decoded: int) -> list[str]:
    """What the decode found against the plan: frames the index lists but the file lacks, or, where the
    count was estimated from the duration, a file that ends well before its container says (truncated)."""
    expected = index.frame_count
    if index.exact:
        return [f"{expected - decoded} frame(s) of the input could not be decoded"] if decoded != expected else []
    if decoded < expected - max(2, expected // 100):
        return [f"the input holds {decoded} frames where its duration implies about {expected}; "
                "it may be truncated or damaged"]  # fmt: skip
    return []


def _with_path(path: Path, error: str) -> str:
    return error if error.startswith(str(path)) else f"{path}: {error}"


def _segment_config(config: Config) -> Config:
    """A segment is restored with the file's settings, to a scratch file it may replace."""
    segment = copy.deepcopy(config)
    segment.output.overwrite = True
    segment.start = segment.duration = None
    segment.faces.tracks = None  # per-segment rows would overwrite each other; batch writes no tracks file
    return segment


def _segment_name(index: int, suffix: str) -> str:
    return f"seg-{index:05d}{suffix}"


def segment_suffix(codec: str | None) -> str:
    """NUT keeps every timestamp exactly; codecs it cannot hold (ProRes) go in MOV (intra: no B-frame shift)."""
    if codec is None:
        return ".nut"
    try:
        name = av.codec.Codec(codec, "w").canonical_name
    except (ValueError, av.error.FFmpegError):
        return ".nut"
    for suffix, muxer in SEGMENT_CONTAINERS:
        with av.open(io.BytesIO(), "w", format=muxer) as container:
            if name in container.supported_codecs:
                return suffix
    return ".mkv"


def _complete(output: Path, index: PacketIndex) -> bool:
    """An existing output holds exactly the input's frames at its timestamps (known only with an exact index)."""
    if not index.exact:
        return False
    try:
        verify_video(output, index.pts, index.time_base)
    except GpenVideoError:
        return False
    return True


def _mismatch(old: FileRecord, identity: InputIdentity, settings: str) -> str:
    """Why an earlier run's record does not match this run (said in the log when its work is not reused)."""
    if old.identity != asdict(identity):
        return f"the input changed (recorded {old.identity}, now {asdict(identity)})"
    return f"the settings changed (hash {old.settings} recorded, {settings} now)"


def _clean_work_dir(work_dir: Path, keep: set[str]) -> None:
    """Remove segment files no record points to (a crash can leave a finished but unrecorded one)."""
    if not work_dir.is_dir():
        return
    for path in work_dir.iterdir():
        if path.name not in keep:
            with contextlib.suppress(OSError):
                path.unlink()
