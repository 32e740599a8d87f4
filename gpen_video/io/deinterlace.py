"""Interlaced sources: field-rate deinterlace, and the weave back to frames.

Restoring a face on a woven frame restores its combing: the two fields were shot 1/50 s apart. So an
interlaced source is turned into field-rate pictures with FFmpeg's ``bwdif`` (``mode=send_field``, through
PyAV's filter graph), faces are found, restored and pasted at field rate, and each pair of field-rate
pictures is woven back into one frame: the first field's lines from the first picture, the second field's
lines from the second. With no face touched the weave gives back the decoded lines exactly (``bwdif`` keeps
the lines of the field it is centred on), so frame count, timestamps and field order stay the source's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.filter
import numpy as np

from gpen_video.errors import InputError
from gpen_video.io.field_analysis import Order
from gpen_video.io.reader import Frame

DEINTERLACE_MODES = ("keep", "progressive", "frame", "off")


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
