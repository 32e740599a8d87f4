"""The wiring of a run: read → faces+align → restore → compose → write; the stages live in their packages.

A frame with no face goes to the encoder as the decoded source samples (one encode). A frame with faces
is aligned, restored and pasted back (``align.stage``, ``restore.batcher``, ``align.compose_stage``, on the
frame path ``align.paths.choose_path`` picks once) and converted back with the stream's own matrix; samples
outside the paste mask stay the source's. Side packets reach the writer on their own channel
(``side_packets``); per-frame face rows go to the ``--tracks`` file (``faces.tracks_file``). The stages are
built and summarised (``run_stages``) and the frames written (``encode_loop``) as an image sequence's are.
"""

from __future__ import annotations

import itertools

from gpen_video.archival import refuse_conflicts
from gpen_video.encode_loop import encode_frames
from gpen_video.errors import InputError
from gpen_video.faces.tracks_file import open_tracks
from gpen_video.io.encoding import PYAV_ENCODERS, choose_encoding
from gpen_video.io.ffmpeg_backend import FfmpegEncoders, find_ffmpeg
from gpen_video.io.formats import output_caps
from gpen_video.io.output import atomic_output, check_output_path
from gpen_video.io.plan import preflight
from gpen_video.io.probe import frame_count_warnings, probe
from gpen_video.io.reader import VideoReader
from gpen_video.io.side_packets import SidePackets, side_file_for
from gpen_video.io.sources import frame_source, open_writer, output_info, with_field_check
from gpen_video.memory import pin_malloc_mmap_threshold
from gpen_video.report import RunReport, StageTimes
from gpen_video.restore.loader import load_restorer
from gpen_video.restore_job import ProgressCallback, RestoreJob, SegmentWindow, planned_frames
from gpen_video.run_stages import RunStages
from gpen_video.sequence_restore import looks_like_sequence, run_sequence_restore
from gpen_video.stage_threads import Flow

__all__ = ["ProgressCallback", "RestoreJob", "SegmentWindow", "planned_frames", "run_restore"]


def run_restore(job: RestoreJob, threaded: bool = True) -> RunReport:
    """Restore ``job.input`` into ``job.output``; the output appears only if complete and verified.

    ``threaded=False`` runs the same stages one after another in this thread (a baseline for benches).
    """
    config = job.config
    refuse_conflicts(config)
    if looks_like_sequence(job.input):  # film scans, stills: one file a frame (sequence_restore.py)
        return run_sequence_restore(job, threaded)
    pin_malloc_mmap_threshold()  # flat memory over hours of video (see gpen_video/memory.py)
    check_output_path(job.input, job.output, config.output.overwrite)
    source_info = with_field_check(job.info or probe(job.input), config)  # untagged fields: judged on pictures
    info = output_info(source_info, config)  # the output stream: k× with --upscale, progressive after deinterlace
    if config.start is not None and config.start >= source_info.video.duration:  # counts from the stream's start
        raise InputError(f"{job.input}: --start {config.start:.3f}s is past the end ({info.video.duration:.3f}s)")
    binary = find_ffmpeg(config.output.ffmpeg_binary) if config.output.encoder_backend == "ffmpeg" else None
    caps = output_caps(job.encode_for or job.output)  # what the output container holds, asked of FFmpeg
    settings = choose_encoding(info.video, config.output, FfmpegEncoders(binary) if binary else PYAV_ENCODERS, caps)
    preflight(job.output, info, settings, caps, binary)  # encoder options, container, free space: before any work
    restorer = job.restorer or load_restorer(config.restore)
    report = RunReport.begin(job.input, job.output, source_info, settings, restorer.name, config)
    times = StageTimes()
    start, duration, segment, start_byte = config.start, config.duration, job.segment, None
    if segment is not None:
        start, start_byte = segment.decode_from, segment.decode_from_byte
        duration = None if segment.decode_until is None else segment.decode_until - segment.decode_from
    side = SidePackets()
    with (
        VideoReader(job.input, source_info, config.reader, start, duration, start_byte) as reader,
        open_tracks(config.faces.tracks) as tracks,
    ):
        if segment is not None:  # a segment file is video only; its own side packets go to a file beside it
            reader.divert_side_packets(side_file_for(job.output), segment.emit_start, segment.emit_end)
        source = frame_source(reader, side, job.input, source_info, config)  # as decoded, or field-aware
        frames = source.decoded()
        first = next(frames)  # decoded before the writer opens: a range start's offset is then known
        wanted = source.wanted(segment.emits) if segment is not None else None
        stages = RunStages(config, info, restorer, threaded, wanted, tracks)
        flow = Flow(itertools.chain([first], frames), stages.stages, times, threaded=threaded)
        with atomic_output(job.output) as temp:
            writer = open_writer(temp, info, settings, reader, binary, video_only=segment is not None)
            writer.copy_container_metadata(reader.container)
            result = encode_frames(source.outputs(flow), writer, side, temp, times, job.progress)
        stages.finish(report, reader.stats, result, times)
        if segment is None and config.start is None and config.duration is None and not reader.stats.truncated:
            report.warnings += frame_count_warnings(source_info, reader.stats.frames)  # shows a truncated tail
        report.warnings += source.notes  # the field order taken from the pictures, or doubted
    return report
