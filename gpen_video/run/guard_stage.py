"""The ``guard`` stage of the flow, between restore and compose: is each restored face still the source's person?

For each frame with restored faces, at the sampled faces of each track (one in ``identity.every``, counted along the
track), the source crop (``FaceCrops.source``, 8-bit by ``io.colour.to_8bit``) and the restored crop are shrunk to at
most ``SIDE`` px on the path's side (only those rows reach the host) and embedded by the face recogniser with the
same five points, the alignment template's; their distance is the recogniser's own. ``run.identity`` keeps the
tallies and the report's section.

- ``warn``: frames pass straight on; the report says which tracks and frames were over the threshold.
- ``protect``: each frame waits here until the frames ``BlendRamp.reach`` (``identity.ramp`` + ``every`` - 1) after it
  are measured, then leaves with each face's blend factor (``Restored.blend``): 0 on its track's distant frames,
  ramping back to 1 each side. That window is its memory: ``reach`` frames more in flight, each with its working
  frame and its crops (on the device path the frame, the source and restorer's crops and the restored crops stay on
  the GPU: ``run.stages.device_holdings`` counts them). At the defaults (ramp 8, every 4: 11 frames) a 1080p frame
  with one GPEN-2048 face holds about 44 MB (6 MB of samples, three 2048-px crops): about half a gigabyte more.
- ``off`` (or no recogniser): every record passes through as it came.

Nothing here depends on timing: each frame is measured when it arrives, in order, and released only once the frames
its factors depend on have arrived (``idle`` releases nothing), so the same input gives the same factors however
the frames are fed, threaded or not, whatever the batches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from gpen_video.config import IdentityConfig
from gpen_video.faces.geometry import template_points
from gpen_video.run.blend_ramp import BlendRamp
from gpen_video.run.frame_path import FaceCrops, FramePath
from gpen_video.run.identity import IdentitySummary, IdentityTally, RecognizerSource
from gpen_video.run.records import Restored

#: the side (px) crops are shrunk to before the recogniser sees them: dlib's 150-px chip of a face that fills about
#: half the crop needs no more, and a 2048-px crop is 64 times less to move and read
SIDE = 256


class GuardStage:
    """``Restored`` in, ``Restored`` out, in order."""

    name = "guard"

    def __init__(
        self, config: IdentityConfig, path: FramePath, recognizer: RecognizerSource | None, template: str
    ) -> None:
        self.config = config
        self.path = path
        self.recognizer = recognizer
        self.mode = config.guard if recognizer is not None else "off"
        self.template = template
        self.tally = IdentityTally(config.every)
        self.ramp = BlendRamp(config.ramp, config.every)
        self.window = self.ramp.reach if self.mode == "protect" else 0
        self.held: deque[tuple[int, int, Restored]] = deque()  # (arrival, frame number, record)
        self.arrived = 0  # records in so far
        self.frames = 0  # frames written so far: the report's frame numbers
        self.seen: dict[int, int] = {}  # faces of each track so far (one in ``every`` is measured)

    def process(self, item: Restored) -> Iterable[Restored]:
        if self.mode == "off":
            return (item,)
        number = self.frames
        self.frames += int(item.aligned.emit)
        faces = item.aligned.faces
        if item.crops is not None and faces is not None:
            self._measure(item, faces, number)
        if self.mode == "warn":
            return (item,)
        self.held.append((self.arrived, number, item))
        self.arrived += 1
        return self._release(everything=False)

    def idle(self) -> Iterable[Restored]:
        return ()

    def finish(self) -> Iterable[Restored]:
        return self._release(everything=True)

    def summary(self) -> IdentitySummary:
        if self.recognizer is None or self.mode == "off":
            return IdentitySummary("off")
        name, threshold = self.recognizer.described()
        return self.tally.summary(self.mode, name, threshold, self.config.every, self.config.ramp)

    def _measure(self, item: Restored, faces: FaceCrops, number: int) -> None:
        """Each face of the frame into the tally; the sampled ones measured, the distant ones to the ramp."""
        sampled = []
        for k, track in enumerate(faces.tracks):
            count = self.seen.get(track, 0)
            self.seen[track] = count + 1
            if count % self.config.every == 0:
                sampled.append(k)
        distances = dict(zip(sampled, self._distances(item, faces, sampled), strict=True)) if sampled else {}
        for k, track in enumerate(faces.tracks):
            distance = distances.get(k)
            over = distance is not None and distance > 0.0 and distance > self._threshold()
            self.tally.add(track, number, distance, over)
            if over:
                self.ramp.add(track, number)

    def _distances(self, item: Restored, faces: FaceCrops, rows: Sequence[int]) -> list[float]:
        """The recogniser's distance between source and restored crop of each face in ``rows`` (0 without it where
        the two are the same picture: the same embedding)."""
        assert self.recognizer is not None and item.crops is not None
        source = self.path.thumbnails(faces.source, rows, SIDE, (faces.ready,))
        restored = self.path.thumbnails(item.crops, rows, SIDE, (item.ready,))
        out = []
        for before, after in zip(source, restored, strict=True):
            if np.array_equal(before, after):
                out.append(0.0)
                continue
            recognizer = self.recognizer.get()
            a = recognizer.embed(before, self._points(int(faces.source.shape[1]), len(before)))
            b = recognizer.embed(after, self._points(int(item.crops.shape[1]), len(after)))
            out.append(float(recognizer.distance(a, b)[0, 0]))
        return out

    def _threshold(self) -> float:
        assert self.recognizer is not None
        return self.recognizer.threshold

    def _points(self, crop: int, side: int) -> np.ndarray:
        """The template's five points in a ``crop``-px crop shrunk to ``side`` px by block means, (1, 5, 2)."""
        return ((template_points(self.template, crop) + 0.5) * (side / crop) - 0.5)[None]

    def _release(self, everything: bool) -> list[Restored]:
        """The held frames whose factors are settled (all of them at the end), in order."""
        out = []
        while self.held and (everything or self.arrived - 1 - self.held[0][0] >= self.window):
            _, number, item = self.held.popleft()
            out.append(self._protected(item, number))
        return out

    def _protected(self, item: Restored, number: int) -> Restored:
        self.ramp.forget_before(number)
        faces = item.aligned.faces
        if item.crops is None or faces is None:
            return item
        factors = tuple(self.ramp.factor(track, number) for track in faces.tracks)
        self.tally.protected(factors)
        return item if all(f == 1.0 for f in factors) else replace(item, blend=factors)
