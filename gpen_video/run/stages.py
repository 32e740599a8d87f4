"""The faces+align, restore, identity guard and compose stages of one run, built and summarised once for every run
(``run.run``), whatever its source and sink.

The frame path (host or device, ``run.frame_path.choose_path``) is chosen once here; ``finish`` fills the
report from what the stages counted (``RunReport.finish``).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from gpen_video.config import Config
from gpen_video.faces.tracks_file import TracksFile
from gpen_video.io.probe import MediaInfo
from gpen_video.io.reader import ReadStats
from gpen_video.io.writer import WriteResult
from gpen_video.models.registry import resolve_template
from gpen_video.restore.restorer import Restorer
from gpen_video.run.compose_stage import MOST_IN_FLIGHT, ComposeStage
from gpen_video.run.faces_stage import AlignStage
from gpen_video.run.flow import QUEUE_SIZE, Stage
from gpen_video.run.frame_path import choose_path
from gpen_video.run.guard_stage import GuardStage
from gpen_video.run.identity import RecognizerSource
from gpen_video.run.options import frame_path_choice, host_workers, identity_processes, upscaler_for
from gpen_video.run.records import Aligned, Composed, Decoded, Restored
from gpen_video.run.report import RestoreSummary, RunFaces, RunReport, StageTimes, host_bound_hint
from gpen_video.run.restore_stage import CrossFrameBatcher

#: frames with faces on the device beyond those a batch waits for: the queues between the restore, guard and
#: compose stages and the one before restore, and the compose workers' frames
FRAMES_IN_FLIGHT = 3 * QUEUE_SIZE + MOST_IN_FLIGHT


def device_holdings(info: MediaInfo, crop: int, on_device: bool, guard_frames: int = 0) -> tuple[int, int]:
    """What a run keeps on the restorer's device besides the network (``Restorer.preferred_batch``'s budget):
    bytes per face of a batch, and in all. Each face holds its crop and its restored crop; on the device path
    also its source crop and the frame it was cut from (at most a frame a face: one waiting for its batch),
    and ``FRAMES_IN_FLIGHT`` more frames are on their way, and the identity guard's window (``guard_frames``,
    protect's look-ahead) holds that many frames more, each with (at least) one face's three crops. A frame is its
    samples (int32 above 8 bits) and compose's float32 mask."""
    crop_bytes = crop * crop * 3
    if not on_device:
        return 2 * crop_bytes, 0
    sample = 1 if info.video.colour.bit_depth <= 8 else 4
    frame = info.video.width * info.video.height * (3 * sample + 4)
    per_face = frame + crop_bytes * (2 + sample)
    return per_face, FRAMES_IN_FLIGHT * frame + guard_frames * per_face


class RunStages:
    """Faces+align → restore (batched across frames) → compose, for ``info``'s frames (the output's size)."""

    def __init__(
        self,
        config: Config,
        info: MediaInfo,
        restorer: Restorer,
        threaded: bool,
        wanted: Callable[[int], bool] | None = None,
        tracks: TracksFile | None = None,
        recognizer: RecognizerSource | None = None,
    ) -> None:
        self.restorer = restorer
        self.path = choose_path(restorer, frame_path_choice(config))
        template = resolve_template(config.align.template, config.restore.model)
        rate = info.video.frame_rate or Fraction(25)  # the guard samples frames by their number in the source
        self.guard = GuardStage(config.identity, self.path, recognizer, template, rate, identity_processes(config))
        held = device_holdings(info, restorer.size, self.path.on_device, self.guard.window)
        self.batch_size = config.restore.batch_size or restorer.preferred_batch(*held)
        workers = host_workers(config)
        self.faces = AlignStage(config, self.path, restorer.size, wanted, tracks, workers)
        self.batcher = CrossFrameBatcher(self.path, self.batch_size)
        # one at a time in a sequential run: the process's CPU time is then the stage's own
        self.composer = ComposeStage(config.compose, info, self.path, workers if threaded else 0, upscaler_for(config))

    @property
    def stages(
        self,
    ) -> tuple[Stage[Decoded, Aligned], Stage[Aligned, Restored], Stage[Restored, Restored], Stage[Restored, Composed]]:
        return (self.faces, self.batcher, self.guard, self.composer)

    def finish(self, report: RunReport, read: ReadStats, result: WriteResult, times: StageTimes) -> None:
        """The report's frames, faces, tracks, flicker, restorer and timing, from what the stages did."""
        restorer, batcher = self.restorer, self.batcher
        faces = RunFaces(self.faces.summary(), batcher.faces_restored, self.composer.frames_with_faces)
        report.finish(read, result, faces, times)
        report.flicker = self.composer.flicker.summary()
        report.face_flicker = self.composer.face_flicker.summary()
        report.fusion = self.faces.fusion_summary()
        report.selection = self.faces.selection_summary()
        report.input_quality = self.faces.quality_summary()
        report.name_degraded_tracks()
        report.identity = self.guard.summary()
        said = report.identity.warning()
        if said:
            report.warnings.append(said)
        report.restore = RestoreSummary(restorer.name, self.batch_size, batcher.largest_forward, batcher.batches,
                                        str(restorer.device or "host"), restorer.precision_label,
                                        self.path.on_device)  # fmt: skip
        report.hint = host_bound_hint(times, report.frames_written, report.restore.device)
        seconds = report.wall_seconds
        report.faces_per_second = round(batcher.faces_restored / seconds, 3) if seconds else 0
