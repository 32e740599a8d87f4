"""One run of one input: the job (``job``), the records the stages hand each other (``records``), the flow
that joins the stages by bounded queues (``flow``), the three stages (``faces_stage``, ``restore_stage``,
``compose_stage``) on one frame path (``frame_path``), the frame sources (``sources``, ``sequence``) and sinks
(``sinks``), the report (``report``), and ``run(job, source, sink)`` that carries a job out (``run``).
``run_restore`` (``restore``) chooses once between a video and an image sequence and calls it.
"""

from gpen_video.run.job import ProgressCallback, RestoreJob, SegmentWindow, planned_frames
from gpen_video.run.report import RunReport
from gpen_video.run.restore import restore_job, run_restore

__all__ = [
    "ProgressCallback",
    "RestoreJob",
    "RunReport",
    "SegmentWindow",
    "planned_frames",
    "restore_job",
    "run_restore",
]
