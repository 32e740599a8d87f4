"""The ``faces`` stage of the flow: detect, track and smooth faces (``faces.FaceStage``, with look-ahead),
then align the faces of each frame to be restored, on the run's frame path (host or device)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gpen_video.config import Config
from gpen_video.faces.tracks_file import TracksFile
from gpen_video.faces.types import FacesSummary, FrameFaces
from gpen_video.models.registry import resolve_template
from gpen_video.run.frame_path import FramePath
from gpen_video.run.records import Aligned, Decoded


class AlignStage:
    """``Decoded`` in, ``Aligned`` out, in order; frames wait here while the tracker looks ahead."""

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
        self.stage = FaceStage(config.faces, tracks=tracks, workers=workers)  # tracks: the --tracks file's rows
        self.pending: dict[int, Decoded] = {}

    def process(self, item: Decoded) -> Iterable[Aligned]:
        self.pending[item.frame.index] = item
        counted = self.wanted is None or self.wanted(item.frame.pts)  # a warm-up frame is tracked, not reported
        return self._release(self.stage.push(item.frame.index, item.image, item.frame.time, counted))

    def idle(self) -> Iterable[Aligned]:
        return ()

    def finish(self) -> Iterable[Aligned]:
        released = self._release(self.stage.flush())
        self.stage.close()
        return released

    def _release(self, finished: list[FrameFaces]) -> list[Aligned]:
        out = []
        for frame_faces in finished:
            item = self.pending.pop(frame_faces.index)
            emit = self.wanted is None or self.wanted(item.frame.pts)
            if frame_faces.faces and emit:
                crops = self.path.align(item.image, frame_faces.faces, self.crop_size, self.template)
                out.append(Aligned(item.frame, emit, item.image, crops))
            else:  # nothing to paste: the source samples go out as they are
                out.append(Aligned(item.frame, emit, None, None))
        return out

    def summary(self) -> FacesSummary:
        return self.stage.summary()
