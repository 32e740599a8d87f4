"""The ``faces`` stage of the flow: detect, track and smooth faces (``faces.FaceStage``, with look-ahead), fuse
each face with its neighbours along its track (``align.fusion``, ``fusion.frames`` each side), then align the
faces of each frame to be restored, on the run's frame path (host or device)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np

from gpen_video.align.fusion import FaceView, FusedFace, FusionSummary, FusionTally
from gpen_video.config import Config
from gpen_video.faces.tracks_file import TracksFile
from gpen_video.faces.types import FacesSummary, FrameFaces
from gpen_video.models.registry import resolve_template
from gpen_video.run.frame_path import FramePath
from gpen_video.run.records import Aligned, Decoded


class AlignStage:
    """``Decoded`` in, ``Aligned`` out, in order; frames wait here while the tracker looks ahead, and then while
    fusion's ``fusion.frames`` later neighbours come in."""

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
        # the --tracks file's rows: written as the faces are released, or with fusion on, once they are fused
        self.tracks = tracks if self.radius else None
        self.stage = FaceStage(config.faces, tracks=None if self.radius else tracks, workers=workers)
        self.pending: dict[int, Decoded] = {}
        # frames with final faces: the ``radius`` already aligned before the next one, and those not aligned yet
        self.window: deque[tuple[FrameFaces, Decoded]] = deque()
        self.ahead = 0  # of the window's frames, how many (at its end) are not aligned yet
        self.fusion = FusionTally(self.radius, self.strength)

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
            if self.ahead > self.radius:  # its later neighbours are in
                out.append(self._next())
        return out

    def _next(self) -> Aligned:
        """The window's first frame not aligned yet, aligned; the window then keeps the ``radius`` before the next."""
        position = len(self.window) - self.ahead
        frame_faces, item = self.window[position]
        emit = self.wanted is None or self.wanted(item.frame.pts)
        if frame_faces.faces and emit:
            fused, weights = self._fused(position) if self.radius else (None, None)
            crops = self.path.align(item.image, frame_faces.faces, self.crop_size, self.template, fused)
            aligned = Aligned(item.frame, emit, item.image, crops)
        else:  # nothing to paste: the source samples go out as they are
            aligned, weights = Aligned(item.frame, emit, None, None), None
        if self.tracks is not None and frame_faces.reported is not None:
            self.tracks.write(replace(frame_faces, index=frame_faces.reported), weights)
        self.ahead -= 1
        while len(self.window) - self.ahead > self.radius:
            self.window.popleft()
        return aligned

    def _fused(self, position: int) -> tuple[np.ndarray, list[float]]:
        """The frame at ``position`` with each face fused with the same track's faces in the frames around it, and
        each face's fusion weight sum."""
        frame_faces, item = self.window[position]
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
            for face in frame_faces.faces
        ]
        pool = self.stage.pool  # idle while this thread fuses; results in order, so any number gives the same
        results: list[FusedFace] = (
            list(pool.map(self._fuse_one, jobs)) if pool is not None else [self._fuse_one(job) for job in jobs]
        )
        fused = item.image.copy()
        for face, result in zip(frame_faces.faces, results, strict=True):
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
