"""The ``compose`` stage of the flow: paste restored faces back on the run's frame path, then splice the
result into the encoder's samples; faceless frames pass untouched (their decoded samples are encoded).

With a background upscale (``--upscale``, ``upscaler`` given) every frame is upscaled here, faceless ones
too, the faces are pasted on the upscaled picture at its resolution, and the whole picture is converted to
the encoder's samples (the source's samples cannot be kept: there are k² as many); an alpha matte is the
source's, scaled to it (``io.splice.carry_alpha``), never the converted picture's opaque one.

Frames are composed on a thread pool (OpenCV, NumPy and torch release the GIL; the run's ``threads``,
``MOST_IN_FLIGHT`` at most) and released in the order they came; the flicker meter sees them in that order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import av
import numpy as np

from gpen_video.config import ComposeConfig
from gpen_video.io.colour import from_working
from gpen_video.io.probe import MediaInfo
from gpen_video.io.splice import carry_alpha, splice_composed
from gpen_video.run.frame_path import FramePath
from gpen_video.run.records import Composed, Restored
from gpen_video.run.report import FaceFlickerMeter, FlickerMeter

if TYPE_CHECKING:  # torch: only with a background upscale
    from gpen_video.models.upscale import Upscaler

#: frames composed at once at most, whatever the cores: each holds its frame and its restored crops
MOST_IN_FLIGHT = 8
#: a composed frame: the encoder's frame, and for the flicker meter the upright image before and after the paste
#: and the paste mask, all three at the output's size (k× the source's with a background upscale)
Result = tuple[av.VideoFrame, np.ndarray, np.ndarray, np.ndarray] | None


class ComposeStage:
    """``Restored`` in, ``Composed`` out, in order; ``workers=0`` composes inline (the sequential baseline)."""

    name = "compose"

    def __init__(
        self,
        config: ComposeConfig,
        info: MediaInfo,
        path: FramePath,
        workers: int = 2,
        upscaler: Upscaler | None = None,
    ) -> None:
        self.config = config
        self.upscaler = upscaler
        self.path = path
        self.colour = info.video.colour
        self.rotation = info.video.rotation
        self.flicker = FlickerMeter()
        self.face_flicker = FaceFlickerMeter()
        self.frames_with_faces = 0
        workers = min(workers, MOST_IN_FLIGHT)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compose") if workers else None
        self.in_flight: deque[tuple[Restored, Future[Result]]] = deque()
        self.max_in_flight = max(2, workers)

    def process(self, item: Restored) -> Iterable[Composed]:
        future: Future[Result]
        if item.crops is None and self.upscaler is not None:  # no face, but the frame is upscaled all the same
            future = self.pool.submit(self._upscale, item) if self.pool is not None else Future()
            if self.pool is None:
                future.set_result(self._upscale(item))
        elif item.crops is None or not item.aligned.emit:  # a range's context frame: restored for the guard alone
            future = Future()
            future.set_result(None)
        else:
            self.frames_with_faces += 1
            if self.pool is not None:
                future = self.pool.submit(self._compose, item)
            else:
                future = Future()
                future.set_result(self._compose(item))
        self.in_flight.append((item, future))
        return self._release(wait=len(self.in_flight) > self.max_in_flight)

    def idle(self) -> Iterable[Composed]:
        return self._release(wait=False)

    def finish(self) -> Iterable[Composed]:
        try:
            return self._release(wait=True, everything=True)
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)

    def _release(self, wait: bool, everything: bool = False) -> list[Composed]:
        """Frames whose compositing is done, in order; ``wait`` blocks for the oldest one."""
        out = []
        while self.in_flight and (self.in_flight[0][1].done() or wait):
            item, future = self.in_flight.popleft()
            composed = future.result()  # re-raises a compositing error here, in order
            aligned = item.aligned
            if composed is None:
                self.flicker.add(None, None, None)
                self.face_flicker.add(None, None, None, 0)
                out.append(Composed(aligned.frame, aligned.emit, aligned.frame.source))
            else:
                output, before, image, mask = composed
                self.flicker.add(before, image, mask)
                size = 0 if item.crops is None else int(item.crops.shape[1])  # None: an upscaled faceless frame
                self.face_flicker.add(before, image, aligned.faces if size else None, size)
                out.append(Composed(aligned.frame, aligned.emit, output))
            wait = everything
        return out

    def _compose(self, item: Restored) -> Result:
        aligned = item.aligned
        assert aligned.image is not None and aligned.faces is not None and item.crops is not None
        if self.upscaler is not None:  # faces pasted at the upscaled resolution (compose scales their transforms)
            big = self.upscaler.upscale(aligned.image)
            result = self.path.compose(
                big, aligned.faces, item.crops, item.ready, self.config, aligned.frame.pts, item.blend
            )
            return self._upscaled_frame(result.image, aligned.frame.source), big, result.image, result.mask
        result = self.path.compose(
            aligned.image, aligned.faces, item.crops, item.ready, self.config, aligned.frame.pts, item.blend
        )
        output = splice_composed(
            aligned.frame.source, result.image, result.mask, self.colour, self.rotation, result.regions
        )
        return output, aligned.image, result.image, result.mask

    def _upscale(self, item: Restored) -> Result:
        assert self.upscaler is not None
        source = item.aligned.frame.source
        big = self.upscaler.upscale(item.aligned.frame.upright(self.colour, self.rotation))
        return self._upscaled_frame(big, source), big, big, np.zeros(big.shape[:2], np.float32)

    def _upscaled_frame(self, image: np.ndarray, source: av.VideoFrame) -> av.VideoFrame:
        """An upscaled picture as the encoder's samples, with the source's alpha matte scaled to it (never opaque)."""
        output = from_working(image, self.colour, source.format.name, self.rotation)
        carry_alpha(output, source)
        return output
