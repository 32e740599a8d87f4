"""``run(job, source, sink)``: the one skeleton every run goes through — a video file, an image sequence into a
folder or into a video, a preview, a batch segment.

The identity guard's face recogniser is opened (or refused), the restorer loaded, the report begun, the source
entered (its reader opened) and its first frame decoded before the sink opens its writer (a range start's offset is
then known); the faces+align, restore, guard and compose stages (``run.stages``) are joined to the source by
``run.flow.Flow``, and the sink writes what comes out. The report is filled from what the stages counted, then
from what the sink and the source have to say.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2

from gpen_video.faces.tracks_file import open_tracks
from gpen_video.memory import pin_malloc_mmap_threshold
from gpen_video.models.loader import load_restorer
from gpen_video.run.flow import Flow
from gpen_video.run.identity import open_recognizer
from gpen_video.run.job import RestoreJob
from gpen_video.run.report import RunReport, StageTimes
from gpen_video.run.sinks import FrameSink
from gpen_video.run.sources import FrameSource
from gpen_video.run.stages import RunStages


@contextmanager
def _opencv_in_one_thread() -> Iterator[None]:
    """OpenCV's calls each in the thread that makes them, for the run's length. The stages' threads and their
    worker pools (``--threads``) are the run's parallelism; OpenCV's own pool inside them only contends for the
    same cores, and its idle threads wait busily: compose of six 1080p faces took 42 % more CPU with it on 2
    cores, for the same samples (OpenCV's results do not depend on its thread count)."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def run(job: RestoreJob, source: FrameSource, sink: FrameSink, threaded: bool = True) -> RunReport:
    """Carry ``job`` out from ``source`` into ``sink``; ``threaded=False`` runs the same stages one after
    another in this thread (a baseline for benches, bit-identical output)."""
    with _opencv_in_one_thread():
        return _run(job, source, sink, threaded)


def _run(job: RestoreJob, source: FrameSource, sink: FrameSink, threaded: bool) -> RunReport:
    pin_malloc_mmap_threshold()  # flat memory over hours of video (see gpen_video/memory.py)
    config = job.config
    recognizer = open_recognizer(config.identity)  # protect without a recogniser: refused before any work
    restorer = job.restorer or load_restorer(config.restore)
    report = RunReport.begin(job.input, job.output, source.info, sink.settings, restorer.name, config)
    times = StageTimes(count_cpu=not threaded)  # one stage at a time: the process's CPU time is that stage's
    source.decode_for(restorer.device, threaded)
    with source, open_tracks(config.faces.tracks) as tracks:  # the --tracks file is complete when the frames are
        frames = source.decoded()
        first = list(itertools.islice(frames, 1))  # decoded before the sink opens its writer
        report.first_decoded_at = time.time()
        stages = RunStages(config, sink.info, restorer, threaded, source.wanted(), tracks, recognizer)
        flow = Flow(itertools.chain(first, frames), stages.stages, times, threaded=threaded)
        result = sink.write(source.outputs(flow), times, job.progress)
        stages.finish(report, source.read_stats(), result, times)
        report.warnings += sink.warnings() + source.warnings()
    return report
