"""The ``guard`` stage of the flow, between restore and compose: is each restored face still the source's person?

For each frame with restored faces, at the sampled frames (one in ``identity.every``, by the frame's number in the
source, its time times the frame rate: the same frames in a preview, a segment and the whole run), the source crop
(``FaceCrops.source``, 8-bit by ``io.colour.to_8bit``) and the restored crop are shrunk to at most ``SIDE`` px on the
path's side (only those rows reach the host) and embedded by the face recogniser with the same five points, the
alignment template's; their distance is the recogniser's own. ``run.identity`` keeps the tallies and the report's
section.

- ``warn``: frames pass straight on; the report says which tracks and frames were over the threshold.
- ``protect``: each frame waits here until the frames ``identity.reach`` (``ramp`` + ``every`` - 1) after it
  are measured, then leaves with each face's blend factor (``Restored.blend``): 0 on its track's distant frames,
  ramping back to 1 each side. That window is its memory: ``reach`` frames more in flight, each with its working
  frame and its crops (on the device path the frame, the source and restorer's crops and the restored crops stay on
  the GPU: ``run.stages.device_holdings`` counts them). At the defaults (ramp 8, every 12: 19 frames) a 1080p frame
  with one GPEN-2048 face holds about 44 MB (6 MB of samples, three 2048-px crops): about 0.8 GB more. A range's
  faces depend on the frames ``reach`` either side, so a ranged run restores and measures that many frames beyond
  it, unwritten (``identity.context_frames``, ``run.faces_stage``): they count in the ramp, not in the report.
- ``off`` (or no recogniser): every record passes through as it came.

Nothing here depends on timing: each frame is measured when it arrives, in order, and released only once the frames
its factors depend on have arrived (``idle`` releases nothing), so the same input gives the same factors however
the frames are fed, threaded or not, whatever the batches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from gpen_video.config import IdentityConfig
from gpen_video.faces.geometry import template_points
from gpen_video.run.blend_ramp import BlendRamp
from gpen_video.run.frame_path import FaceCrops, FramePath
from gpen_video.run.identity import IdentitySummary, IdentityTally, RecognizerSource
from gpen_video.run.identity_jobs import InlineJobs, ProcessJobs
from gpen_video.run.records import Restored

#: the side (px) crops are shrunk to before the recogniser sees them: dlib's 150-px chip of a face that fills about
#: half the crop needs no more, and a 2048-px crop is 64 times less to move and read
SIDE = 256


#: frames whose distances may be on their way at once (``ProcessJobs``) before the stage waits for the oldest: the
#: thumbnails they hold are about 0.4 MB a face
MOST_PENDING = 32


@dataclass(eq=False)
class _Frame:
    """A frame in the stage: its record, its place among the frames in (the ramp's axis) and among those written
    (the report's), and its sampled faces' distances (None: none sampled)."""

    arrival: int
    number: int
    item: Restored
    tracks: tuple[int, ...] = ()
    sampled: tuple[int, ...] = ()  # the faces measured, by their place in the frame
    same: tuple[int, ...] = ()  # of those, the ones whose restored crop is their source (distance 0, not computed)
    computed: Future[list[float]] | None = None  # the others' distances, in order


class GuardStage:
    """``Restored`` in, ``Restored`` out, in order."""

    name = "guard"

    def __init__(
        self,
        config: IdentityConfig,
        path: FramePath,
        recognizer: RecognizerSource | None,
        template: str,
        rate: Fraction,
        processes: int = 0,
    ) -> None:
        self.config = config
        self.rate = rate  # frames a second: a frame's number in the source is its time times this
        self.path = path
        self.recognizer = recognizer
        self.mode = config.guard if recognizer is not None else "off"
        self.template = template
        self.tally = IdentityTally(config.every)
        self.ramp = BlendRamp(config)
        self.window = config.reach if self.mode == "protect" else 0
        self.jobs: InlineJobs | ProcessJobs | None = None
        if recognizer is not None:
            self.jobs = ProcessJobs(config.recognizer, processes) if processes > 0 else InlineJobs(recognizer.get)
        self.unsettled: deque[_Frame] = deque()  # frames whose distances are not in the tally yet, in order
        self.held: deque[_Frame] = deque()  # protect: frames waiting for the factors of the frames after them
        self.arrived = 0  # records in so far
        self.settled = 0  # of those, the ones whose distances are in the tally (and the ramp)
        self.frames = 0  # frames written so far: the report's frame numbers

    def process(self, item: Restored) -> Iterable[Restored]:
        if self.mode == "off":
            return (item,)
        frame = _Frame(self.arrived, self.frames, item)
        self.frames += int(item.aligned.emit)
        self.arrived += 1
        faces = item.aligned.faces
        if item.crops is not None and faces is not None:
            self._measure(frame, faces)
        self.unsettled.append(frame)
        if self.mode == "protect":
            self.held.append(frame)
        out = self._release(everything=False)
        return (item, *out) if self.mode == "warn" else out

    def idle(self) -> Iterable[Restored]:
        self._settle(wait=False)
        return ()

    def finish(self) -> Iterable[Restored]:
        try:
            return self._release(everything=True)
        finally:
            if self.jobs is not None:
                self.jobs.close()

    def summary(self) -> IdentitySummary:
        if self.recognizer is None or self.mode == "off":
            return IdentitySummary("off")
        name, threshold = self.recognizer.described()
        return self.tally.summary(self.mode, name, threshold, self.config.every, self.config.ramp)

    def _measure(self, frame: _Frame, faces: FaceCrops) -> None:
        """The frame's faces handed to the jobs (their thumbnails: the source's and the restored crop's) if it is a
        sampled frame."""
        frame.tracks = faces.tracks
        item = frame.item
        if round(item.aligned.frame.time * self.rate) % self.config.every:
            return
        sampled = list(range(len(faces.tracks)))
        frame.sampled = tuple(sampled)
        assert item.crops is not None
        source = self.path.thumbnails(faces.source, sampled, SIDE, (faces.ready,))
        restored = self.path.thumbnails(item.crops, sampled, SIDE, (item.ready,))
        pairs, same = [], []
        for k, before, after in zip(sampled, source, restored, strict=True):
            if np.array_equal(before, after):  # the same picture: the same embedding, distance 0
                same.append(k)
                continue
            pairs.append((before, after, self._points(int(faces.source.shape[1]), len(before)),
                          self._points(int(item.crops.shape[1]), len(after))))  # fmt: skip
        frame.same = tuple(same)
        if pairs:
            assert self.jobs is not None
            frame.computed = self.jobs.submit(pairs)

    def _settle(self, wait: bool, until: int | None = None) -> None:
        """The distances that are in (``wait``: waiting for them up to arrival ``until``, all without one) into the
        tally and the ramp, frame by frame in order; also waits where too many are on their way."""
        while self.unsettled:
            frame = self.unsettled[0]
            due = wait and (until is None or frame.arrival <= until)
            if not (due or len(self.unsettled) > MOST_PENDING) and not (
                frame.computed is None or frame.computed.done()
            ):
                return
            self.unsettled.popleft()
            self._count(frame)
            self.settled += 1

    def _count(self, frame: _Frame) -> None:
        computed = iter(frame.computed.result() if frame.computed is not None else ())
        written = frame.item.aligned.emit  # a range's context frames count in the ramp alone
        for k, track in enumerate(frame.tracks):
            distance = None if k not in frame.sampled else 0.0 if k in frame.same else next(computed)
            over = distance is not None and distance > 0.0 and distance > self._threshold()
            if written:
                self.tally.add(track, frame.number, distance, over)
            if over:
                self.ramp.add(track, frame.arrival)

    def _threshold(self) -> float:
        assert self.recognizer is not None
        return self.recognizer.threshold

    def _points(self, crop: int, side: int) -> np.ndarray:
        """The template's five points in a ``crop``-px crop shrunk to ``side`` px by block means, (1, 5, 2)."""
        return ((template_points(self.template, crop) + 0.5) * (side / crop) - 0.5)[None]

    def _release(self, everything: bool) -> list[Restored]:
        """Settles what is in; in protect, the held frames whose factors are settled (all of them at the end)."""
        if everything:
            self._settle(wait=True)
        elif self.held:  # the oldest held frame needs the frames ``window`` after it
            self._settle(wait=self.arrived - 1 - self.held[0].arrival >= self.window,
                         until=self.held[0].arrival + self.window)  # fmt: skip
        else:
            self._settle(wait=False)
        out = []
        while self.held and (everything or self.settled - 1 - self.held[0].arrival >= self.window):
            out.append(self._protected(self.held.popleft()))
        return out

    def _protected(self, frame: _Frame) -> Restored:
        self.ramp.forget_before(frame.arrival)
        item, faces = frame.item, frame.item.aligned.faces
        if item.crops is None or faces is None or not item.aligned.emit:
            return item
        factors = tuple(self.ramp.factor(track, frame.arrival) for track in faces.tracks)
        self.tally.protected(factors)
        return item if all(f == 1.0 for f in factors) else replace(item, blend=factors)
