"""Field order and pulldown measured on the pictures themselves, where the stream's tags say nothing or lie.

A field sits in time between its neighbours, so with top field first the bottom field of frame i is nearer in
content to the top field of frame i+1 than the top field of frame i is to the bottom field of frame i+1; with
progressive pictures both distances are equal. Telecined 29.97 (3:2 pulldown) shows as a field repeated every
five frames, once per parity. Field order from the codec (``codec_context.field_order``: MPEG-2's
``top_field_first``, H.264's picture structure, the container's ``fiel`` atom) is read here too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

Order = Literal["tff", "bff", "progressive", "unknown"]

# AVFieldOrder, as PyAV's ``codec_context.field_order`` returns it
# FFmpeg's AVFieldOrder: TB (4) is top coded first, *bottom displayed first*; BT (5) the other way
CODEC_FIELD_ORDER: dict[int, Order] = {0: "unknown", 1: "progressive", 2: "tff", 3: "bff", 4: "bff", 5: "tff"}
COMB_INTERLACED = 1.2  # median comb_ratio above this: the fields of a frame show different moments
ORDER_RATIO = 1.15  # one field-distance this much larger than the other decides the order
REPEAT_LEVEL = 0.25  # a same-parity field difference below this fraction of the median is a repeated field


@dataclass(frozen=True)
class StreamFieldOrder:
    """What the stream says: ``order`` and whether the decoded pictures are flagged interlaced."""

    order: Order
    flagged_interlaced: bool | None  # the first decoded frame's ``interlaced_frame``; None when not decoded

    def describe(self) -> str:
        return {
            "tff": "interlaced, top field first",
            "bff": "interlaced, bottom field first",
            "progressive": "progressive",
            "unknown": "field order not tagged",
        }[self.order]


def stream_field_order(stream: av.VideoStream, first_frame: av.VideoFrame | None = None) -> StreamFieldOrder:
    """Field order from the codec context (and the first frame's interlaced flag, when given)."""
    order = CODEC_FIELD_ORDER.get(int(stream.codec_context.field_order or 0), "unknown")
    flagged = None if first_frame is None else bool(first_frame.interlaced_frame)
    if order == "unknown" and flagged is False:
        order = "progressive"
    return StreamFieldOrder(order, flagged)


# -- measures on pictures ------------------------------------------------------------------------------
def _as_luma(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, np.float32)
    if a.ndim == 3:  # BGR/RGB: the mean is enough for line statistics
        a = a.mean(axis=2)
    return a


def line_difference_energy(image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> float:
    """Mean squared difference between each line and the next, inside ``box`` (x0, y0, x1, y1): combing shows here.

    Adjacent lines belong to opposite fields, so motion between the fields raises this; compare it with the
    same measure on the source (or on a progressive reference) to tell combing from detail.
    """
    a = _as_luma(image)
    if box is not None:
        x0, y0, x1, y1 = box
        y0 -= y0 % 2  # whole line pairs, the same fields on both sides of a comparison
        a = a[y0:y1, x0:x1]
    if a.shape[0] < 2:
        raise ValueError("line_difference_energy needs at least two lines")
    return float(np.mean(np.square(np.diff(a, axis=0))))


def comb_ratio(image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> float:
    """How much more each line departs from its opposite-field neighbours than from its same-field ones.

    ≈ 1 or below on progressive pictures and on noise; well above 1 where the two fields show different
    moments. ``mean |x[y] - (x[y-1] + x[y+1]) / 2| / mean |x[y] - (x[y-2] + x[y+2]) / 2|``.
    """
    a = _as_luma(image)
    if box is not None:
        x0, y0, x1, y1 = box
        a = a[y0:y1, x0:x1]
    if a.shape[0] < 5:
        raise ValueError("comb_ratio needs at least five lines")
    mid = a[2:-2]
    cross = np.abs(mid - 0.5 * (a[1:-3] + a[3:-1])).mean()
    same = np.abs(mid - 0.5 * (a[:-4] + a[4:])).mean()
    return float(cross / max(same, 1e-6))


def _bottom_at_top_lines(a: np.ndarray) -> np.ndarray:
    """The bottom field (odd lines) interpolated to the top field's lines (even), edge line repeated."""
    bottom = a[1::2]
    n_top = a[0::2].shape[0]
    out = np.empty((n_top, a.shape[1]), np.float32)
    out[0] = bottom[0]
    k = min(n_top - 1, bottom.shape[0] - 1)
    out[1 : k + 1] = 0.5 * (bottom[:k] + bottom[1 : k + 1])
    out[k + 1 :] = bottom[-1]
    return out


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))


BLOCK = (8, 32)  # field lines x columns of the blocks motion is measured in
MOTION_FLOOR = 3.0  # mean |change| (8-bit levels) from one frame's top field to the next's: a block that moves
CONFIDENT_RATIO = 1.4  # a verdict acted on: the other field distance this much larger...
CONFIDENT_COMB = 1.4  # ...and the moving blocks this combed (progressive pictures measured: 0.4-1.0),
SURE_RATIO = 2.0  # or the distance this much larger (progressive measured: 1.0-1.34) and combed past 1.2,
CONFIDENT_BLOCKS = 32  # over at least this many moving blocks (frame pairs x blocks)
#: columns a picture is measured on, at most: every 2nd of a 1920-px picture, every 4th of a 3840-px one. Fields are
#: lines, so every line is kept; a moving edge combs every column it crosses, and a 4K picture's measure was
#: ~125 ms of CPU (the first 16 pictures of every run of a stream tagged progressive, and every probe of one untagged)
MEASURED_COLUMNS = 960


def _block_means(a: np.ndarray) -> np.ndarray:
    bh, bw = BLOCK
    h, w = a.shape[0] // bh * bh, a.shape[1] // bw * bw
    return a[:h, :w].reshape(h // bh, bh, w // bw, bw).mean(axis=(1, 3))


@dataclass(frozen=True)
class FieldAnalysis:
    """Field order measured on the pictures, in the blocks that move (a still background says nothing)."""

    order: Order
    frames: int
    tff_distance: float  # mean |bottom(i) - top(i+1)| over moving blocks: small when the top field is first
    bff_distance: float  # mean |top(i) - bottom(i+1)| over moving blocks: small when the bottom field is first
    comb_ratio: float  # ``comb_ratio`` pooled over the moving blocks: > 1 where the fields show two moments
    moving_blocks: int  # (frame pair, block) samples that moved

    @property
    def confidence(self) -> float:
        """The larger field distance over the smaller: about 3 for linear motion when interlaced, 1 if progressive."""
        lo, hi = sorted((self.tff_distance, self.bff_distance))
        return hi / lo if lo > 0 else float("inf") if hi > 0 else 1.0

    @property
    def confident(self) -> bool:
        """Interlaced beyond doubt: a verdict a run may act on without a tag or ``--field-order``."""
        combed = self.confidence >= CONFIDENT_RATIO and self.comb_ratio >= CONFIDENT_COMB
        ordered = self.confidence >= SURE_RATIO and self.comb_ratio >= COMB_INTERLACED
        return self.order in ("tff", "bff") and (combed or ordered) and self.moving_blocks >= CONFIDENT_BLOCKS

    @property
    def clearly_progressive(self) -> bool:
        """Enough motion, and the two fields of each frame show one moment."""
        return self.order == "progressive" and self.moving_blocks >= CONFIDENT_BLOCKS

    def describe(self) -> str:
        """``interlaced, top field first (confident: 16 frames, field distances 2.10:1, comb 3.43)``."""
        measured = f"{self.frames} frames, field distances {self.confidence:.2f}:1, comb {self.comb_ratio:.2f}"
        if self.order == "unknown" and self.moving_blocks == 0:
            return f"nothing moves in {self.frames} frame(s): no field order to see"
        words = {"tff": "interlaced, top field first", "bff": "interlaced, bottom field first",
                 "progressive": "progressive", "unknown": "undecided"}[self.order]  # fmt: skip
        sure = self.confident or self.clearly_progressive
        return f"{words} ({'confident' if sure else 'low confidence'}: {measured})"


class FieldMeter:
    """``analyse_fields`` fed one picture at a time, over one or more runs of consecutive pictures.

    ``add`` each picture of a run; ``new_run`` before pictures that do not follow the last one (after a seek),
    so no field distance is taken across the jump; ``result`` pools every run's moving blocks. Every line of a
    picture is measured, on at most ``MEASURED_COLUMNS`` evenly spaced columns.
    """

    def __init__(self, motion_floor: float = MOTION_FLOOR) -> None:
        self.motion_floor = motion_floor
        self.tff = self.bff = self.cross = self.same = 0.0
        self.moving = self.frames = 0
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def new_run(self) -> None:
        self._prev = None

    def add(self, picture: np.ndarray) -> None:
        picture = np.asarray(picture)
        a = _as_luma(picture[:, :: max(1, picture.shape[1] // MEASURED_COLUMNS)])
        if picture.dtype == np.uint16:
            a = a / 257.0
        top, bottom = a[0::2], _bottom_at_top_lines(a)  # both on the even lines: no half-line bias
        self.frames += 1
        prev, self._prev = self._prev, (top, bottom)
        if prev is None:
            return
        m = _block_means(np.abs(top - prev[0])) > self.motion_floor
        if not m.any():
            return
        self.tff += float(_block_means(np.abs(prev[1] - top))[m].sum())
        self.bff += float(_block_means(np.abs(prev[0] - bottom))[m].sum())
        mid = a[2:-2]
        rows = np.repeat(np.repeat(m, 2 * BLOCK[0], axis=0), BLOCK[1], axis=1)[2:-2]  # block mask on frame lines
        h, w = min(rows.shape[0], mid.shape[0]), min(rows.shape[1], mid.shape[1])
        rows = rows[:h, :w]
        self.cross += float(np.abs(mid - 0.5 * (a[1:-3] + a[3:-1]))[:h, :w][rows].sum())
        self.same += float(np.abs(mid - 0.5 * (a[:-4] + a[4:]))[:h, :w][rows].sum())
        self.moving += int(m.sum())

    def result(self) -> FieldAnalysis:
        moving = self.moving
        tff, bff = (self.tff / moving, self.bff / moving) if moving else (0.0, 0.0)
        comb = self.cross / self.same if self.same > 0 else 1.0
        if self.frames < 2 or not moving:
            order: Order = "unknown"  # nothing moves: no field order to see
        elif comb < COMB_INTERLACED:
            order = "progressive"  # the two fields of a frame show one moment
        elif bff > ORDER_RATIO * tff:
            order = "tff"
        elif tff > ORDER_RATIO * bff:
            order = "bff"
        else:
            order = "unknown"
        return FieldAnalysis(order, self.frames, tff, bff, comb, moving)


def analyse_fields(pictures: Iterable[np.ndarray], motion_floor: float = MOTION_FLOOR) -> FieldAnalysis:
    """Decide tff / bff / progressive from consecutive pictures (BGR or luma, 8 or 16 bits, same size).

    Only blocks that move between frames count (``motion_floor`` in 8-bit levels): a talking head on a still
    background is judged on the head. ``unknown`` when nothing moves (static pictures carry no field order)
    or fewer than two pictures.
    """
    meter = FieldMeter(motion_floor)
    for picture in pictures:
        meter.add(picture)
    return meter.result()


@dataclass(frozen=True)
class TelecineReport:
    """3:2 pulldown found (or not) in interlaced pictures."""

    detected: bool
    frames: int
    top_repeats: tuple[int, ...]  # frame i whose top field repeats in frame i+1
    bottom_repeats: tuple[int, ...]
    phase: int | None  # position (0-4) of the top-field repeat in each group of five frames

    def describe(self) -> str:
        if not self.detected:
            return "no 3:2 pulldown found"
        return (
            f"telecined (3:2 pulldown, phase {self.phase}): film at 24000/1001 inside 30000/1001; "
            "inverse telecine (FFmpeg fieldmatch,decimate) restores the film frames"
        )


def detect_telecine(pictures: Iterable[np.ndarray]) -> TelecineReport:
    """3:2 pulldown: a top field and a bottom field each repeated once every five frames, at a steady phase."""
    top_d, bottom_d = [], []
    prev = None
    frames = 0
    for picture in pictures:
        a = _as_luma(picture)
        if prev is not None:
            top_d.append(_distance(prev[0::2], a[0::2]))
            bottom_d.append(_distance(prev[1::2], a[1::2]))
        prev = a
        frames += 1
    if len(top_d) < 9:
        return TelecineReport(False, frames, (), (), None)
    both = np.array(top_d + bottom_d)
    level = REPEAT_LEVEL * float(np.median(both))
    if level <= 0:  # nothing moves: no evidence either way
        return TelecineReport(False, frames, (), (), None)
    top = tuple(i for i, d in enumerate(top_d) if d < level)
    bottom = tuple(i for i, d in enumerate(bottom_d) if d < level)
    groups = len(top_d) // 5
    phase = None
    detected = False
    if len(top) >= max(2, groups - 1) and len(bottom) >= max(2, groups - 1):
        top_phases = np.bincount([i % 5 for i in top], minlength=5)
        bottom_phases = np.bincount([i % 5 for i in bottom], minlength=5)
        steady = top_phases.max() >= 0.8 * len(top) and bottom_phases.max() >= 0.8 * len(bottom)
        sparse = len(top) <= groups + 1 and len(bottom) <= groups + 1  # not a static shot
        if steady and sparse and int(top_phases.argmax()) != int(bottom_phases.argmax()):
            detected = True
            phase = int(top_phases.argmax())
    return TelecineReport(detected, frames, top, bottom, phase)


# -- what a look at a stream found ------------------------------------------------------------------------
FIELD_CHECK_FRAMES = 16  # pictures decoded from the start to judge a stream whose field order is not tagged


@dataclass(frozen=True)
class FieldCheck:
    """``analyse_fields`` on a stream's first pictures, and what the look cost."""

    analysis: FieldAnalysis
    milliseconds: float  # the extra open, the decode of ``analysis.frames`` pictures and the measure


class CombWatch:
    """The first pictures a run decodes anyway, judged once: a stream tagged progressive whose fields comb.

    The measure runs on a thread of its own, so the decode thread only copies each picture's luma (a 4K picture's
    measure is ~28 ms of CPU, its copy ~3 ms): at most ``AHEAD`` pictures wait for it, and the verdict comes when the
    last of the ``frames`` is measured, as before. One worker, so the pictures are measured in order. Not
    ``threaded``: measured as they come, on the caller's thread.
    """

    AHEAD = 2  # pictures copied but not yet measured, at most (the decode thread waits beyond this)

    def __init__(self, frames: int = FIELD_CHECK_FRAMES, threaded: bool = True) -> None:
        self.frames, self.threaded = frames, threaded
        self._meter = FieldMeter()
        self._taken = 0
        self._pending: deque[Future[None]] = deque()
        self._worker: ThreadPoolExecutor | None = None
        self.analysis: FieldAnalysis | None = None

    def add(self, picture: av.VideoFrame) -> FieldAnalysis | None:
        """Measure ``picture`` (as grey) until ``frames`` are in; then returns their analysis, once."""
        if self.analysis is not None or self._taken >= self.frames:
            return None
        self._taken += 1
        grey = picture.to_ndarray(format="gray")
        if not self.threaded:
            self._meter.add(grey)
        else:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="comb-watch")
            self._pending.append(self._worker.submit(self._meter.add, grey))
            while len(self._pending) > self.AHEAD:
                self._pending.popleft().result()
        return self.finish() if self._taken >= self.frames else None

    def finish(self) -> FieldAnalysis | None:
        """The analysis of what came (a clip shorter than ``frames``), if not given yet."""
        while self._pending:
            self._pending.popleft().result()
        if self._worker is not None:
            self._worker.shutdown()
            self._worker = None
        if self.analysis is not None or not self._meter.frames:
            return None
        self.analysis = self._meter.result()
        return self.analysis
