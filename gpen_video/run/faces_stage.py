"""The ``faces`` stage of the flow: detect, track and smooth faces (``faces.FaceStage``, with look-ahead), fuse
each face with its neighbours along its track (``align.fusion``, ``fusion.frames`` each side), then align the
faces of each frame to be restored, on the run's frame path (host or device)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np

from gpen_video.align.fusion import FaceView, FusedFace, FusionSummary, FusionTally
from gpen_video.config import Config, FacesConfig
from gpen_video.faces.selection import FaceSelector, SelectionSummary, face_selector
from gpen_video.faces.stage import sync_period, warm_start
from gpen_video.faces.track_quality import QualityTally, TrackQuality
from gpen_video.faces.tracks_file import TracksFile
from gpen_video.faces.types import FacesSummary, FrameFaces, TrackedFace
from gpen_video.models.registry import resolve_template
from gpen_video.run.frame_path import FramePath
from gpen_video.run.records import Aligned, Decoded


def detector_device(config: FacesConfig, path: FramePath) -> str | None:
    """The torch device the detector's networks run on (``faces.detector_device``), None for ONNX Runtime on the
    CPU: auto puts them on the restorer's device where the frame path keeps the frames there (a GPU; on a CPU
    device, the device path's test twin, torch on the CPU)."""
    restorer = path.restorer.device
    if config.detector_device == "cuda":
        return str(restorer) if restorer is not None and restorer.is_cuda else "cuda"
    if config.detector_device == "auto" and path.on_device and restorer is not None:
        return str(restorer)
    return None


class AlignStage:
    """``Decoded`` in, ``Aligned`` out, in order; frames wait here while the tracker looks ahead, and then while
    fusion's ``fusion.frames`` later neighbours come in (in a ranged run under protect, at least the guard's
    ``identity.context_frames``: the unwritten frames that near the range are restored too, for the guard)."""

    name = "faces"

    def __init__(
        self,
        config: Config,
        path: FramePath,
        crop_size: int,
        wanted: Callable[[int], bool] | None = None,
        tracks: TracksFile | None = None,
        workers: int = 1,
    ) -> None:
        from gpen_video.faces import FaceStage

        self.path = path
        self.template = resolve_template(config.align.template, config.restore.model)
        self.crop_size = crop_size
        self.wanted = wanted  # a segment's emit window: frames outside it are tracked, not restored
        self.radius, self.strength = config.fusion.frames, config.fusion.strength
        # frames each side of the window restored all the same (not written): the guard's protect ramp reads them
        self.context = config.identity.context_frames() if wanted is not None else 0
        self.lead = max(self.radius, self.context)  # later frames in before a frame is aligned
        self.since_written: int | None = None  # frames since the last one written (None: none yet)
        self.tracks = tracks  # the --tracks file's rows, written once each frame's faces are chosen (and fused)
        self.stage = FaceStage(config.faces, workers=workers, detector_device=detector_device(config.faces, path))
        self.selector: FaceSelector | None = face_selector(
            config.selection, self.stage.detector, config.identity.recognizer
        )
        self.faces_config = config.faces
        self.settle = warm_start(config.faces, self.radius).settle_frames  # a selection period's lag on its sync
        self.period: int | None = None  # the sync period of the last frame chosen
        self.period_in: int | None = None  # frames until the next selection period (None: none coming)
        self.pending: dict[int, Decoded] = {}
        # frames with final faces: the ``radius`` already aligned before the next one, and those not aligned yet
        self.window: deque[tuple[FrameFaces, Decoded]] = deque()
        self.ahead = 0  # of the window's frames, how many (at its end) are not aligned yet
        self.fusion = FusionTally(self.radius, self.strength)
        self.quality = QualityTally()  # each track's input quality, on a sample of its counted frames

    def process(self, item: Decoded) -> Iterable[Aligned]:
        self.pending[item.frame.index] = item
        counted = self.wanted is None or self.wanted(item.frame.pts)  # a warm-up frame is tracked, not reported
        return self._release(self.stage.push(item.frame.index, item.image, item.frame.time, counted))

    def idle(self) -> Iterable[Aligned]:
        return ()

    def finish(self) -> Iterable[Aligned]:
        released = self._release(self.stage.flush())
        while self.ahead:  # the last frames: their later neighbours are all there are
            released.append(self._next())
        self.stage.close()
        return released

    def _release(self, finished: list[FrameFaces]) -> list[Aligned]:
        out = []
        for frame_faces in finished:
            self.window.append((frame_faces, self.pending.pop(frame_faces.index)))
            self.ahead += 1
            if self.ahead > self.lead:  # its later neighbours are in
                out.append(self._next())
        return out

    def _next(self) -> Aligned:
        """The window's first frame not aligned yet, aligned; the window then keeps the ``radius`` before the next."""
        position = len(self.window) - self.ahead
        frame_faces, item = self.window[position]
        emit = self.wanted is None or self.wanted(item.frame.pts)
        restore = emit or self._in_context(position)
        skipped = self._chosen(frame_faces, item)
        faces = [face for face, skip in zip(frame_faces.faces, skipped, strict=True) if skip is None]
        weights: list[float | None] | None = None
        if faces and restore:
            fused, fused_weights = self._fused(position, faces) if self.radius else (None, None)
            crops = self.path.align(item.image, faces, self.crop_size, self.template, fused)
            aligned = Aligned(item.frame, emit, item.image, crops)
            if fused_weights is not None:
                taken = iter(fused_weights)
                weights = [None if skip else next(taken) for skip in skipped]
        else:  # nothing to paste: the source samples go out as they are
            aligned = Aligned(item.frame, emit, None, None)
        if self.tracks is not None and frame_faces.reported is not None:
            reasons = skipped if self.selector is not None else None
            self.tracks.write(replace(frame_faces, index=frame_faces.reported), weights, reasons)
        self.ahead -= 1
        self.since_written = 0 if emit else None if self.since_written is None else self.since_written + 1
        while len(self.window) - self.ahead > self.radius:
            self.window.popleft()
        return aligned

    def _in_context(self, position: int) -> bool:
        """Whether the unwritten frame at ``position`` is within ``context`` frames of a written one."""
        if not self.context:
            return False
        if self.since_written is not None and self.since_written < self.context:
            return True
        later = range(position + 1, min(position + self.context + 1, len(self.window)))
        assert self.wanted is not None
        return any(self.wanted(self.window[q][1].frame.pts) for q in later)

    def _chosen(self, frame_faces: FrameFaces, item: Decoded) -> list[str | None]:
        """Each face's verdict (None: restored, else why not), the selection periods kept in step with the sync."""
        period = sync_period(self.faces_config, item.frame.time)
        if self.period is not None and period != self.period:  # a sync frame: a new selection period settles in
            self.period_in = self.settle
        self.period = period
        if self.period_in is not None:
            if self.period_in == 0 and self.selector is not None:
                self.selector.new_period()
            self.period_in = None if self.period_in == 0 else self.period_in - 1
        if frame_faces.reported is not None:
            for face in frame_faces.faces:
                self.quality.add(frame_faces.reported, face, item.image)
        if self.selector is None or not frame_faces.faces:
            return [None] * len(frame_faces.faces)
        counted = frame_faces.reported is not None
        return self.selector.choose(frame_faces.index, frame_faces.faces, item.image, counted)

    def _fused(self, position: int, faces: list[TrackedFace]) -> tuple[np.ndarray, list[float]]:
        """The frame at ``position`` with each of ``faces`` fused with the same track's faces in the frames around
        it, and each face's fusion weight sum."""
        _, item = self.window[position]
        reach = range(max(position - self.radius, 0), min(position + self.radius + 1, len(self.window)))
        around = [self.window[q] for q in reach if q != position]
        jobs = [
            (
                FaceView(item.image, face.landmarks5),
                [
                    FaceView(d.image, f.landmarks5)
                    for faces, d in around
                    for f in faces.faces
                    if f.track_id == face.track_id
                ],
            )
            for face in faces
        ]
        pool = self.stage.pool  # idle while this thread fuses; results in order, so any number gives the same
        results: list[FusedFace] = (
            list(pool.map(self._fuse_one, jobs)) if pool is not None else [self._fuse_one(job) for job in jobs]
        )
        fused = item.image.copy()
        for face, result in zip(faces, results, strict=True):
            x0, y0, x1, y1 = result.box
            fused[y0:y1, x0:x1] = result.patch
            self.fusion.add(face.track_id, result)
        return fused, [result.weight_sum for result in results]

    def _fuse_one(self, job: tuple[FaceView, list[FaceView]]) -> FusedFace:
        return self.path.fuse(job[0], job[1], self.strength)

    def summary(self) -> FacesSummary:
        return self.stage.summary()

    def fusion_summary(self) -> FusionSummary:
        return self.fusion.summary()

    def quality_summary(self) -> tuple[TrackQuality, ...]:
        return self.quality.summary()

    def selection_summary(self) -> SelectionSummary | None:
        return self.selector.summary() if self.selector is not None else None
