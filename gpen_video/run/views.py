"""What the stages see of a video, and how their output becomes the frames written: the frames as decoded
(``DecodedView``), or, for interlaced input (``reader.deinterlace``, issue 15):

- ``keep`` (the default): each frame turned into two field-rate pictures with ``bwdif``
  (``io.deinterlace.FieldRateFrames``), so faces are found, restored and pasted at field rate, and the composed
  fields woven back into frames with the source's index, ``pts`` and field order (``io.deinterlace.Weaver``; a
  frame whose two fields were not touched goes out as decoded) (``FieldView``);
- ``progressive``: the field-rate pictures themselves written (25i → 50p, new timestamps at twice the rate,
  and the run says so) (``FieldRateView``);
- ``frame``: each frame deinterlaced to one progressive picture (the output is tagged progressive)
  (``DeinterlacedView``);
- ``off``: the frames as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from gpen_video.config import Config
from gpen_video.errors import InputError
from gpen_video.io.deinterlace import FieldDeinterlacer, FieldRateFrames, Weaver
from gpen_video.io.field_analysis import CombWatch, FieldAnalysis, Order
from gpen_video.io.field_check import tagged_order
from gpen_video.io.probe import MediaInfo
from gpen_video.io.reader import Frame, VideoReader
from gpen_video.io.side_packets import SidePackets
from gpen_video.run.field_order import deinterlace_mode, field_notes, field_order
from gpen_video.run.records import Composed, Decoded

log = logging.getLogger(__name__)


def reader_frames(reader: VideoReader, side: SidePackets, path: Path) -> Iterator[Frame]:
    """The reader's frames; the packets demuxed before each frame go to ``side`` first."""
    decoded = False
    for frame in reader:
        decoded = True
        side.put(reader.take_packets())
        yield frame
    if not decoded:
        raise InputError(f"{path}: no video frame could be decoded in the requested range")
    side.put(reader.take_packets())  # packets after the last frame


def decoded_frames(reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo) -> Iterator[Decoded]:
    """The reader's frames with their upright working image (converted here, in the decode thread: at 4K the
    conversion alone is ~40 ms a frame)."""
    colour, rotation = info.video.colour, info.video.rotation
    for frame in reader_frames(reader, side, path):
        yield Decoded(frame, frame.upright(colour, rotation))


class DecodedView:
    """What the stages see of the input, and how their output becomes the frames written (one to one here).

    ``notes`` is what the run must say about the fields (``field_notes``; a stream tagged progressive whose
    first decoded frames comb, seen by a ``CombWatch`` on them), for the report's warnings.
    """

    def __init__(self, reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo) -> None:
        self.reader, self.side, self.path, self.info = reader, side, path, info
        self.notes: list[str] = []
        self.watch: CombWatch | None = None

    def decoded(self) -> Iterator[Decoded]:
        try:
            for item in decoded_frames(self.reader, self.side, self.path, self.info):
                if self.watch is not None:
                    self._watched(self.watch.add(item.frame.source))
                yield item
        finally:  # the clip ended before the watch's count, or the run stopped reading: its thread ends here
            if self.watch is not None:
                self._watched(self.watch.finish())

    def _watched(self, analysis: FieldAnalysis | None) -> None:
        if analysis is not None and analysis.confident:
            note = (
                f"{self.path.name}: tagged progressive, but its first frames comb: {analysis.describe()}; "
                f"if it is interlaced, pass --field-order {analysis.order} (faces are then restored per field)"
            )
            log.info("%s", note)  # said once, with the report's warnings (even with -q)
            self.notes.append(note)

    def wanted(self, emits: Callable[[int], bool]) -> Callable[[int], bool]:
        """A segment's emit test on source ``pts``, for the records the stages see."""
        return emits

    def outputs(self, items: Iterable[Composed]) -> Iterator[Composed]:
        return iter(items)


class FieldView(DecodedView):
    """``--deinterlace keep``: field-rate pictures in, composed fields woven back into the source's frames."""

    def __init__(self, reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo, order: Order) -> None:
        super().__init__(reader, side, path, info)
        self.fields = FieldRateFrames(reader_frames(reader, side, path), reader.video, order)
        self.source_pts: dict[int, int] = {}  # field pts -> its frame's source pts (segment windows)

    def decoded(self) -> Iterator[Decoded]:
        colour, rotation = self.info.video.colour, self.info.video.rotation
        for field in self.fields:
            self.source_pts[field.pts] = self.fields.source_frame(field.index).pts
            yield Decoded(field, field.upright(colour, rotation))

    def wanted(self, emits: Callable[[int], bool]) -> Callable[[int], bool]:
        return lambda pts: emits(self.source_pts[pts])

    def outputs(self, items: Iterable[Composed]) -> Iterator[Composed]:
        weaver = Weaver(self.fields)
        first: Composed | None = None
        for item in items:
            self.source_pts.pop(item.frame.pts, None)
            if item.frame.index % 2 == 0:
                first = item
                continue
            if first is None or first.frame.index != item.frame.index - 1:
                raise InputError(f"{self.path}: field {item.frame.index} came without its frame's first field")
            yield self._woven(weaver, first, item)
            first = None
        if first is not None:  # a last frame with one field out of bwdif: as decoded, or its one picture k×
            if first.output is first.frame.source:
                frame = weaver.add_untouched(first.frame.index // 2)
            else:
                weaver.add(first.frame.index, first.output)
                frame = weaver.add(first.frame.index + 1, first.output)
                assert frame is not None
            yield Composed(frame, first.emit, frame.source)

    @staticmethod
    def _woven(weaver: Weaver, first: Composed, second: Composed) -> Composed:
        emit = first.emit or second.emit
        if first.output is first.frame.source and second.output is second.frame.source:  # no face on either
            frame = weaver.add_untouched(first.frame.index // 2)
        else:
            weaver.add(first.frame.index, first.output)
            woven = weaver.add(second.frame.index, second.output)
            assert woven is not None
            frame = woven
        return Composed(frame, emit, frame.source)


class FieldRateView(FieldView):
    """``--deinterlace progressive``: the field-rate pictures are the output frames, at their own timestamps."""

    def outputs(self, items: Iterable[Composed]) -> Iterator[Composed]:
        for item in items:
            self.source_pts.pop(item.frame.pts, None)
            self.fields.release(item.frame.index // 2 - 1)  # bwdif is done with the frame before
            yield item


class DeinterlacedView(DecodedView):
    """``--deinterlace frame``: each frame deinterlaced (``bwdif``) to one progressive picture, same timing."""

    def __init__(self, reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo, order: Order) -> None:
        super().__init__(reader, side, path, info)
        self.order = order

    def decoded(self) -> Iterator[Decoded]:
        colour, rotation = self.info.video.colour, self.info.video.rotation
        deinterlacer = FieldDeinterlacer(self.reader.video, self.order, mode="send_frame")
        frames: dict[int, Frame] = {}

        def records(pictures: list) -> Iterator[Decoded]:
            for p in pictures:
                source = frames.pop(p.frame_index)
                p.source.pts, p.source.time_base = source.pts, source.time_base
                frame = Frame(source.index, source.pts, source.time_base, p.source)
                yield Decoded(frame, frame.upright(colour, rotation))

        for frame in reader_frames(self.reader, self.side, self.path):
            frames[frame.index] = frame
            yield from records(deinterlacer.push(frame.source, frame.index))
        yield from records(deinterlacer.flush())


def frame_view(
    reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo, config: Config, threaded: bool = True
) -> DecodedView:
    """The view of the input the stages work on: as decoded, at field rate (``keep``), or deinterlaced; ``threaded``:
    a comb watch on its frames measures on a thread of its own."""
    source = _frame_view(reader, side, path, info, config)
    source.notes = field_notes(info, config)
    reader_config = config.reader
    if (
        reader_config.field_order == "auto"
        and reader_config.deinterlace != "off"
        and tagged_order(info) == "progressive"
    ):
        source.watch = CombWatch(threaded=threaded)  # the frames the run decodes anyway: no extra read
    return source


def _frame_view(reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo, config: Config) -> DecodedView:
    mode = deinterlace_mode(info, config)
    if mode == "keep":
        log.info("%s: interlaced (%s); faces are restored per field and the fields woven back", path.name,
                 field_order(info, config))  # fmt: skip
        return FieldView(reader, side, path, info, field_order(info, config))
    if mode == "progressive":
        rate = info.video.frame_rate
        log.warning("%s: --deinterlace progressive: writing %s fields a second as frames, with new timestamps",
                    path.name, f"{float(rate * 2):g}" if rate else "the")  # fmt: skip
        return FieldRateView(reader, side, path, info, field_order(info, config))
    if mode == "frame":
        return DeinterlacedView(reader, side, path, info, field_order(info, config))
    return DecodedView(reader, side, path, info)
