"""``run_restore(job)``: a restore job carried out, whatever its input. The choice between a video file and an
image sequence (or still) is made once, in ``restore_job``, and the matching source and sink are built here
for the one skeleton, ``run.run.run``.

A video is probed once (from the container's index where there is one), its untagged field order judged on its
first pictures where the run would use the verdict, and the output's encoding chosen and checked (encoder
options, container, free space) before any work.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from gpen_video.config import Config
from gpen_video.errors import InputError
from gpen_video.io.encoding import PYAV_ENCODERS, choose_encoding
from gpen_video.io.ffmpeg_backend import FfmpegEncoders, find_ffmpeg
from gpen_video.io.formats import output_caps
from gpen_video.io.output import check_output_path, default_output_path
from gpen_video.io.plan import preflight
from gpen_video.io.probe import probe
from gpen_video.io.sequence import find_sequence, looks_like_sequence
from gpen_video.run.field_order import output_info, with_field_check
from gpen_video.run.job import ProgressCallback, RestoreJob, planned_frames
from gpen_video.run.options import refuse_conflicts, refuse_for_video
from gpen_video.run.report import RunReport
from gpen_video.run.run import run
from gpen_video.run.sequence import default_sequence_output, sequence_run
from gpen_video.run.sinks import VideoFileSink
from gpen_video.run.sources import VideoSource


def restore_job(
    input: Path, output: Path | None, config: Config, progress: ProgressCallback | None = None
) -> RestoreJob:
    """The job of restoring ``input`` (into ``output``, or beside it: ``reel.restored.mov``, ``scan.restored/``),
    with the video-or-sequence choice made here, once, and a video probed once."""
    if looks_like_sequence(input):  # film scans and stills, one file a frame
        return RestoreJob(input, output or default_sequence_output(input), config, progress=progress, kind="sequence")
    info = probe(input)
    return RestoreJob(input, output or default_output_path(input), config, progress=progress, info=info, kind="video")


def job_frames(job: RestoreJob) -> int:
    """How many frames the job will write: a video's planned range, or the files of a sequence (for the progress
    bar's total, so it can show the time left)."""
    if job.info is not None:
        return planned_frames(job.info, job.config)
    return len(find_sequence(job.input, on_gap="list").files)


def run_restore(job: RestoreJob, threaded: bool = True) -> RunReport:
    """Restore ``job.input`` into ``job.output``; the output appears only if complete and verified.

    ``threaded=False`` runs the same stages one after another in this thread (a baseline for benches).
    """
    refuse_conflicts(job.config)
    sequence = job.kind == "sequence" or (job.kind == "auto" and looks_like_sequence(job.input))
    if sequence:
        with contextlib.ExitStack() as stack:
            source, sink = sequence_run(job, stack)
            return run(job, source, sink, threaded)
    refuse_for_video(job.config)
    source, video_sink = video_run(job)
    return run(job, source, video_sink, threaded)


def video_run(job: RestoreJob) -> tuple[VideoSource, VideoFileSink]:
    """The source and sink of a run over a video file: its range read, the output encoded as chosen for it."""
    config = job.config
    check_output_path(job.input, job.output, config.output.overwrite)
    source_info = with_field_check(job.info or probe(job.input), config)  # untagged fields: judged on pictures
    info = output_info(source_info, config)  # the output stream: k× with --upscale, progressive after deinterlace
    if config.start is not None and config.start >= source_info.video.duration:  # counts from the stream's start
        raise InputError(f"{job.input}: --start {config.start:.3f}s is past the end ({info.video.duration:.3f}s)")
    binary = find_ffmpeg(config.output.ffmpeg_binary) if config.output.encoder_backend == "ffmpeg" else None
    caps = output_caps(job.encode_for or job.output)  # what the output container holds, asked of FFmpeg
    settings = choose_encoding(info.video, config.output, FfmpegEncoders(binary) if binary else PYAV_ENCODERS, caps)
    preflight(job.output, info, settings, caps, binary)  # encoder options, container, free space: before any work
    source = VideoSource(job, source_info)
    opener = source.writer_opener(info, settings, binary)
    # a batch segment is checked from its packets when assembly reads it (jobs.assemble), not read back here too
    return source, VideoFileSink(job.output, info, settings, source.side, opener, verify=job.segment is None)
