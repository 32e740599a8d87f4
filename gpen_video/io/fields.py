"""Interlaced sources: field order (from the stream and from the pictures), field-rate deinterlace, weave.

Restoring a face on a woven frame restores its combing: the two fields were shot 1/50 s apart. So an
interlaced source is turned into field-rate pictures with FFmpeg's ``bwdif`` (``mode=send_field``, through
PyAV's filter graph), faces are found, restored and pasted at field rate, and each pair of field-rate
pictures is woven back into one frame: the first field's lines from the first picture, the second field's
lines from the second. With no face touched the weave gives back the decoded lines exactly (``bwdif`` keeps
the lines of the field it is centred on), so frame count, timestamps and field order stay the source's.

Field order comes from the codec (``codec_context.field_order``: MPEG-2's ``top_field_first``, H.264's
picture structure, the container's ``fiel`` atom) and, because tags lie, from the pictures: a field sits
in time between its neighbours, so with top field first the bottom field of frame i is nearer in content
to the top field of frame i+1 than the top field of frame i is to the bottom field of frame i+1; with
progressive pictures both distances are equal. Telecined 29.97 (3:2 pulldown) shows as a field repeated
every five frames, once per parity.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.filter
import numpy as np

from gpen_video.errors import InputError
from gpen_video.io.probe import MediaInfo
from gpen_video.io.reader import Frame, open_probed

log = logging.getLogger(__name__)

Order = Literal["tff", "bff", "progressive", "unknown"]
DEINTERLACE_MODES = ("keep", "progressive", "frame", "off")

# AVFieldOrder, as PyAV's ``codec_context.field_order`` returns it
_CODEC_FIELD_ORDER: dict[int, Order] = {0: "unknown", 1: "progressive", 2: "tff", 3: "bff", 4: "tff", 5: "bff"}
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
    order = _CODEC_FIELD_ORDER.get(int(stream.codec_context.field_order or 0), "unknown")
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
    so no field distance is taken across the jump; ``result`` pools every run's moving blocks.
    """

    def __init__(self, motion_floor: float = MOTION_FLOOR) -> None:
        self.motion_floor = motion_floor
        self.tff = self.bff = self.cross = self.same = 0.0
        self.moving = self.frames = 0
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def new_run(self) -> None:
        self._prev = None

    def add(self, picture: np.ndarray) -> None:
        a = _as_luma(picture)
        if np.asarray(picture).dtype == np.uint16:
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


# -- field-rate deinterlace -----------------------------------------------------------------------------
@dataclass
class FieldPicture:
    """One field-rate picture from ``bwdif``: ``field`` 0 is the frame's first field in time, 1 its second."""

    frame_index: int  # the source frame it came from
    field: int
    pts: int  # field-rate timestamp, in ``time_base`` (half the stream's)
    time_base: Fraction
    source: av.VideoFrame  # full-height progressive picture centred on that field


class FieldDeinterlacer:
    """``bwdif`` in PyAV's filter graph: each interlaced frame in, two field-rate pictures out, in order.

    ``mode="send_field"`` gives field rate (two pictures per frame); ``"send_frame"`` one per frame (the
    ``frame`` deinterlace mode). Parity is set from the order measured or tagged, not left to per-frame
    flags, so a mistagged file is deinterlaced the way its pictures need.
    """

    def __init__(self, stream: av.VideoStream, order: Order, mode: str = "send_field") -> None:
        if order not in ("tff", "bff"):
            raise InputError(f"cannot deinterlace with field order '{order}'; pass --deinterlace off")
        if mode not in ("send_field", "send_frame"):
            raise ValueError(f"bwdif mode must be send_field or send_frame, not {mode}")
        self.order = order
        self.mode = mode
        self.graph = av.filter.Graph()
        source = self.graph.add_buffer(template=stream)
        bwdif = self.graph.add("bwdif", f"mode={mode}:parity={order}:deint=all")
        sink = self.graph.add("buffersink")
        source.link_to(bwdif)
        bwdif.link_to(sink)
        self.graph.configure()
        self._frame_indices: list[int] = []
        self._out = 0

    def push(self, frame: av.VideoFrame, index: int) -> list[FieldPicture]:
        """Feed one decoded frame; returns the field-rate pictures ready so far (bwdif looks one frame ahead)."""
        self._frame_indices.append(index)
        self.graph.vpush(frame)
        return self._drain()

    def flush(self) -> list[FieldPicture]:
        self.graph.vpush(None)
        return self._drain()

    def _drain(self) -> list[FieldPicture]:
        per_frame = 2 if self.mode == "send_field" else 1
        out = []
        while True:
            try:
                picture = self.graph.vpull()
            except (av.BlockingIOError, av.EOFError):
                break
            k, field = divmod(self._out, per_frame)
            self._out += 1
            index = self._frame_indices[k] if k < len(self._frame_indices) else k
            out.append(FieldPicture(index, field, int(picture.pts), picture.time_base, picture))
        return out


def field_pictures(
    frames: Iterable[tuple[int, av.VideoFrame]], stream: av.VideoStream, order: Order
) -> Iterator[FieldPicture]:
    """(index, decoded frame) pairs → field-rate pictures, two per frame, in presentation order."""
    deinterlacer = FieldDeinterlacer(stream, order)
    for index, frame in frames:
        yield from deinterlacer.push(frame, index)
    yield from deinterlacer.flush()


# -- weave -----------------------------------------------------------------------------------------------
def first_field_parity(order: Order) -> int:
    """Line parity of the field shown first: 0 (even lines) for tff, 1 for bff."""
    if order not in ("tff", "bff"):
        raise ValueError(f"weave needs tff or bff, not {order}")
    return 0 if order == "tff" else 1


def weave(first: np.ndarray, second: np.ndarray, order: Order) -> np.ndarray:
    """One frame from two field-rate pictures (lines on axis 0): the first field's lines from ``first``."""
    if first.shape != second.shape or first.dtype != second.dtype:
        raise ValueError(f"weave needs two pictures of one shape and dtype, got {first.shape}, {second.shape}")
    p = first_field_parity(order)
    out = np.empty_like(first)
    out[p::2] = first[p::2]
    out[1 - p :: 2] = second[1 - p :: 2]
    return out


def weave_frames(first: av.VideoFrame, second: av.VideoFrame, order: Order) -> av.VideoFrame:
    """``weave`` plane by plane on decoded frames (subsampled chroma lines alternate fields too).

    Keeps the samples exactly (no conversion), so 4:2:0/4:2:2 chroma stays with its own field. The result
    has no timestamp: give it the source frame's ``pts``/``time_base``.
    """
    if (first.width, first.height, first.format.name) != (second.width, second.height, second.format.name):
        raise ValueError("weave_frames needs two frames of one size and format")
    out = av.VideoFrame(first.width, first.height, first.format.name)
    for i, plane in enumerate(out.planes):  # rows of bytes: the weave does not care about the sample type
        woven = weave(_rows(first, i), _rows(second, i), order)
        rows = np.zeros((plane.height, plane.line_size), np.uint8)
        width = min(rows.shape[1], woven.shape[1])
        rows[:, :width] = woven[: plane.height, :width]
        plane.update(rows.tobytes())
    return out


def _rows(frame: av.VideoFrame, i: int) -> np.ndarray:
    plane = frame.planes[i]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)


# -- the pipeline's view: field-rate Frame records in, woven Frame records out ---------------------------
class FieldRateFrames:
    """The video reader's frames as field-rate ``Frame`` records (``index`` = 2 × frame + field).

    Each record's ``source`` is the ``bwdif`` picture centred on that field, with the field-rate ``pts`` and
    ``time_base`` (what ``--deinterlace progressive`` writes). ``source_frame(i)`` gives back the interlaced
    frame a field came from, which ``Weaver`` needs for the woven frame's timing; it is kept only until
    the frame has been woven (``release``).
    """

    def __init__(self, frames: Iterable[Frame], stream: av.VideoStream, order: Order) -> None:
        self.frames = frames
        self.stream = stream
        self.order = order
        self._sources: dict[int, Frame] = {}

    def __iter__(self) -> Iterator[Frame]:
        deinterlacer = FieldDeinterlacer(self.stream, self.order)

        def records(pictures: list[FieldPicture]) -> Iterator[Frame]:
            for p in pictures:
                yield Frame(2 * p.frame_index + p.field, p.pts, p.time_base, p.source)

        for frame in self.frames:
            self._sources[frame.index] = frame
            yield from records(deinterlacer.push(frame.source, frame.index))
        yield from records(deinterlacer.flush())

    def source_frame(self, field_index: int) -> Frame:
        return self._sources[field_index // 2]

    def release(self, frame_index: int) -> None:
        self._sources.pop(frame_index, None)


class Weaver:
    """Pairs processed field-rate pictures back into frames with the source frame's index, ``pts`` and ``time_base``.

    ``add`` takes field pictures in order (any pixel format, the same for both fields of a frame) and
    returns the woven ``Frame`` once a frame's second field is in. A frame whose two fields were not touched
    can be passed on as the source frame itself, without weaving (``add_untouched``).
    """

    def __init__(self, fields: FieldRateFrames) -> None:
        self.fields = fields
        self._first: dict[int, av.VideoFrame] = {}
        self.woven = 0

    def add(self, field_index: int, picture: av.VideoFrame) -> Frame | None:
        frame_index, field = divmod(field_index, 2)
        if field == 0:
            self._first[frame_index] = picture
            return None
        first = self._first.pop(frame_index, None)
        if first is None:
            raise ValueError(f"field {field_index}: its frame's first field never came")
        source = self.fields.source_frame(field_index)
        woven = weave_frames(first, picture, self.fields.order)
        woven.pts, woven.time_base = source.pts, source.time_base
        for attr in ("color_range", "colorspace", "color_primaries", "color_trc"):
            setattr(woven, attr, getattr(source.source, attr))
        self.fields.release(frame_index)
        self.woven += 1
        return Frame(source.index, source.pts, source.time_base, woven)

    def add_untouched(self, frame_index: int) -> Frame:
        self._first.pop(frame_index, None)
        source = self.fields.source_frame(2 * frame_index)
        self.fields.release(frame_index)
        return source


# -- what probe says ---------------------------------------------------------------------------------------
TELECINE_RATE = Fraction(30000, 1001)
FIELD_CHECK_FRAMES = 16  # pictures decoded from the start to judge a stream whose field order is not tagged
FIELD_CHECK_PLACES = 3  # where the start says nothing: the same again a third and two thirds of the way in


def tagged_order(info: MediaInfo) -> Order:
    """The field order the stream's tag says (``unknown`` where it says nothing)."""
    return _CODEC_FIELD_ORDER.get(info.video.metadata.field_order_id, "unknown")


@dataclass(frozen=True)
class FieldCheck:
    """``analyse_fields`` on a stream's first pictures, and what the look cost."""

    analysis: FieldAnalysis
    milliseconds: float  # the extra open, the decode of ``analysis.frames`` pictures and the measure


def measure_field_order(
    info: MediaInfo, frames: int = FIELD_CHECK_FRAMES, places: int = FIELD_CHECK_PLACES
) -> FieldCheck:
    """Decode ``frames`` pictures of the video stream from its start (as 8-bit grey) and judge their fields.

    One more open of the file (a probed file's light open: ``io.reader.open_probed``) and a short read at its
    start (never a full read): about 50 ms for 16 SD frames, 450 ms at 1280x720 FFV1. Where the start says
    nothing (a still slate, black, bars: no verdict either way), ``frames`` more are read after a seek to each
    of ``places - 1`` later points (a third, two thirds of the probed duration). A stretch that cannot be
    decoded is judged on what did decode.
    """
    t0 = time.perf_counter()
    meter = FieldMeter()
    duration = info.video.duration
    try:
        with open_probed(info.path, info) as container:
            stream = container.streams[info.video.index]
            for place in range(places):
                if place:
                    analysis = meter.result()
                    if analysis.confident or analysis.clearly_progressive or not duration or not stream.time_base:
                        break
                    start = (stream.start_time or 0) + int(duration * place / places / stream.time_base)
                    container.seek(start, stream=stream, backward=True)
                meter.new_run()
                for n, frame in enumerate(container.decode(stream), 1):
                    meter.add(frame.to_ndarray(format="gray"))
                    if n >= frames:
                        break
    except (av.error.FFmpegError, OSError, InputError) as exc:
        log.debug("%s: field check stopped after %d pictures (%s)", info.path, meter.frames, exc)
    return FieldCheck(meter.result(), round(1000 * (time.perf_counter() - t0), 1))


def check_fields(info: MediaInfo, tagged_progressive_too: bool = False) -> MediaInfo:
    """``info`` with ``video.field_check`` measured where the stream's tag does not say the field order.

    A tag of tff/bff is believed; a progressive tag too, unless ``tagged_progressive_too`` (``probe`` looks;
    a run watches the frames it decodes instead, at no cost: ``CombWatch``). Measured once per input: an
    ``info`` already checked is returned as it is, so a job's stages and segments never look again.
    """
    tagged = tagged_order(info)
    if info.video.field_check is not None or tagged in ("tff", "bff") or not Path(info.path).is_file():
        return info
    if tagged == "progressive" and not tagged_progressive_too:
        return info
    video = dataclasses.replace(info.video, field_check=measure_field_order(info))
    return dataclasses.replace(info, video=video)


class CombWatch:
    """The first pictures a run decodes anyway, judged once: a stream tagged progressive whose fields comb."""

    def __init__(self, frames: int = FIELD_CHECK_FRAMES) -> None:
        self.frames = frames
        self._meter = FieldMeter()
        self.analysis: FieldAnalysis | None = None

    def add(self, picture: av.VideoFrame) -> FieldAnalysis | None:
        """Measure ``picture`` (as grey) until ``frames`` are in; then returns their analysis, once."""
        if self.analysis is not None:
            return None
        self._meter.add(picture.to_ndarray(format="gray"))
        return self.finish() if self._meter.frames >= self.frames else None

    def finish(self) -> FieldAnalysis | None:
        """The analysis of what came (a clip shorter than ``frames``), if not given yet."""
        if self.analysis is not None or not self._meter.frames:
            return None
        self.analysis = self._meter.result()
        return self.analysis


def probe_telecine(path: str, stream_index: int, frames: int = 40) -> TelecineReport:
    """``detect_telecine`` on the first ``frames`` pictures of a 30000/1001 stream (decoded as grey)."""
    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        pictures = []
        for frame in container.decode(stream):
            pictures.append(frame.to_ndarray(format="gray"))
            if len(pictures) >= frames:
                break
    return detect_telecine(pictures)
