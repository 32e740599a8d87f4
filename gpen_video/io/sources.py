"""The two ends of a video run: the frames that come in (with their upright working image) and the writer
they go out through, sized for the output (k× the source with a background upscale).

Interlaced input (``reader.deinterlace``, issue 15): ``keep`` (the default) turns each frame into two
field-rate pictures with ``bwdif`` (``io.fields.FieldRateFrames``), so faces are found, restored and pasted
at field rate, and weaves the composed fields back into frames with the source's index, ``pts`` and field
order (``io.fields.Weaver``; a frame whose two fields were not touched goes out as decoded). ``frame``
deinterlaces each frame to one progressive picture (the output is tagged progressive); ``progressive``
writes the field-rate pictures themselves (25i → 50p, new timestamps at twice the rate, and the run says
so); ``off`` treats the frames as they are.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path

from gpen_video.align.records import Composed, Decoded
from gpen_video.config import Config
from gpen_video.errors import InputError
from gpen_video.io.deinterlace import FieldDeinterlacer, FieldRateFrames, Weaver
from gpen_video.io.encoding import EncodeSettings
from gpen_video.io.ffmpeg_backend import FfmpegWriter
from gpen_video.io.field_analysis import CombWatch, FieldAnalysis, Order
from gpen_video.io.field_check import check_fields, tagged_order
from gpen_video.io.metadata import FIELD_ORDER_IDS, FIELD_ORDERS
from gpen_video.io.probe import MediaInfo
from gpen_video.io.reader import Frame, VideoReader
from gpen_video.io.side_packets import SidePackets
from gpen_video.io.writer import VideoWriter, Writer

log = logging.getLogger(__name__)
PROGRESSIVE_ID = FIELD_ORDER_IDS["progressive"]  # AVFieldOrder, from the one table in io.metadata
ORDER_ID = {"tff": FIELD_ORDER_IDS["tt"], "bff": FIELD_ORDER_IDS["bb"]}  # AVFieldOrder of a woven output


def field_order(info: MediaInfo, config: Config) -> Order:
    """The input's field order: ``--field-order``; else the stream's tag; else, where the tag says nothing, a
    confident verdict from the first pictures (``info.video.field_check``); else progressive."""
    if config.reader.field_order != "auto":
        return config.reader.field_order
    tagged = tagged_order(info)
    if tagged in ("tff", "bff"):
        return tagged
    check = info.video.field_check
    if tagged == "unknown" and check is not None and check.analysis.confident:
        return check.analysis.order
    return "progressive"


def with_field_check(info: MediaInfo, config: Config) -> MediaInfo:
    """``info`` with its untagged field order judged on the first pictures (``io.fields.check_fields``), where
    the run would use the verdict: not with ``--field-order tff|bff`` or ``--deinterlace off``."""
    if config.reader.field_order != "auto" or config.reader.deinterlace == "off":
        return info
    return check_fields(info)


def field_notes(info: MediaInfo, config: Config) -> list[str]:
    """What the run must say about a field order it took from the pictures (or could not), even with -q."""
    check = info.video.field_check
    if config.reader.field_order != "auto" or tagged_order(info) != "unknown" or check is None:
        return []
    analysis, name = check.analysis, info.path.name
    seen = f"judged on its first pictures ({check.milliseconds:.0f} ms): {analysis.describe()}"
    if analysis.confident:
        other = "bff" if analysis.order == "tff" else "tff"
        action = f"--field-order {other} or --deinterlace off to override"
        return [f"{name}: field order not tagged; {seen}: restored as {analysis.order} "
                f"(--deinterlace {config.reader.deinterlace}); {action}"]  # fmt: skip
    if analysis.clearly_progressive:
        log.info("%s: field order not tagged; %s: progressive", name, seen)
        return []
    return [f"{name}: field order not tagged; {seen}: treated as progressive; pass --field-order tff|bff if "
            "it is interlaced"]  # fmt: skip


def deinterlace_mode(info: MediaInfo, config: Config) -> str:
    """``keep``, ``progressive``, ``frame`` or ``none`` (progressive input, or ``--deinterlace off``)."""
    mode = config.reader.deinterlace
    if field_order(info, config) == "progressive" or mode == "off":
        return "none"
    return mode


def output_info(info: MediaInfo, config: Config) -> MediaInfo:
    """``info`` as the output stream will be: ``upscale``× the width and height (a woven frame too: its fields
    are k× pictures), the field order woven (``keep``: tagged as restored, where the source's tag did not say
    it), progressive after ``--deinterlace frame|progressive``; pixel aspect, colour and timing kept."""
    k = config.compose.upscale
    video = dataclasses.replace(info.video, width=info.video.width * k, height=info.video.height * k)
    mode = deinterlace_mode(info, config)
    if mode == "keep" and tagged_order(info) != field_order(info, config):
        order = field_order(info, config)
        meta = dataclasses.replace(video.metadata, field_order=FIELD_ORDERS[ORDER_ID[order]],
                                   field_order_id=ORDER_ID[order])  # fmt: skip
        video = dataclasses.replace(video, metadata=meta, field_order=meta.field_order)
    if mode == "progressive":  # field rate: two pictures a frame, in bwdif's time base (half the stream's)
        rate = None if video.frame_rate is None else video.frame_rate * 2
        video = dataclasses.replace(video, time_base=video.time_base / 2, frame_rate=rate,
                                    frame_count=video.frame_count * 2)  # fmt: skip
    if mode in ("frame", "progressive"):
        meta = dataclasses.replace(video.metadata, field_order="progressive", field_order_id=PROGRESSIVE_ID)
        video = dataclasses.replace(video, metadata=meta, field_order="progressive")
    return dataclasses.replace(info, video=video)


def open_writer(
    temp: Path,
    info: MediaInfo,
    settings: EncodeSettings,
    reader: VideoReader,
    binary: str | None,
    video_only: bool = False,
) -> Writer:
    """The PyAV writer, or the ffmpeg CLI one (``binary``); a segment's file (``video_only``) holds video alone."""
    side = [] if video_only else reader.side_streams
    offset = Fraction(0) if video_only else (reader.offset or Fraction(0))
    if binary:
        return FfmpegWriter(temp, info, settings, binary, side, offset)
    return VideoWriter(temp, info, settings, side, offset=offset)


def _reader_frames(reader: VideoReader, side: SidePackets, path: Path) -> Iterator[Frame]:
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
    for frame in _reader_frames(reader, side, path):
        yield Decoded(frame, frame.upright(colour, rotation))


class FrameSource:
    """What the stages see of the input, and how their output becomes the frames written (one to one here).

    ``notes`` is what the run must say about the fields (``field_notes``; a stream tagged progressive whose
    first decoded frames comb, seen by a ``CombWatch`` on them), for the report's warnings.
    """

    def __init__(self, reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo) -> None:
        self.reader, self.side, self.path, self.info = reader, side, path, info
        self.notes: list[str] = []
        self.watch: CombWatch | None = None

    def decoded(self) -> Iterator[Decoded]:
        for item in decoded_frames(self.reader, self.side, self.path, self.info):
            if self.watch is not None:
                self._watched(self.watch.add(item.frame.source))
            yield item
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


class FieldSource(FrameSource):
    """``--deinterlace keep``: field-rate pictures in, composed fields woven back into the source's frames."""

    def __init__(self, reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo, order: Order) -> None:
        super().__init__(reader, side, path, info)
        self.fields = FieldRateFrames(_reader_frames(reader, side, path), reader.video, order)
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


class FieldRateSource(FieldSource):
    """``--deinterlace progressive``: the field-rate pictures are the output frames, at their own timestamps."""

    def outputs(self, items: Iterable[Composed]) -> Iterator[Composed]:
        for item in items:
            self.source_pts.pop(item.frame.pts, None)
            self.fields.release(item.frame.index // 2 - 1)  # bwdif is done with the frame before
            yield item


class DeinterlacedSource(FrameSource):
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

        for frame in _reader_frames(self.reader, self.side, self.path):
            frames[frame.index] = frame
            yield from records(deinterlacer.push(frame.source, frame.index))
        yield from records(deinterlacer.flush())


def frame_source(reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo, config: Config) -> FrameSource:
    """The view of the input the stages work on: as decoded, at field rate (``keep``), or deinterlaced."""
    source = _frame_source(reader, side, path, info, config)
    source.notes = field_notes(info, config)
    reader_config = config.reader
    if (
        reader_config.field_order == "auto"
        and reader_config.deinterlace != "off"
        and tagged_order(info) == "progressive"
    ):
        source.watch = CombWatch()  # the frames the run decodes anyway: no extra read
    return source


def _frame_source(reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo, config: Config) -> FrameSource:
    mode = deinterlace_mode(info, config)
    if mode == "keep":
        log.info("%s: interlaced (%s); faces are restored per field and the fields woven back", path.name,
                 field_order(info, config))  # fmt: skip
        return FieldSource(reader, side, path, info, field_order(info, config))
    if mode == "progressive":
        rate = info.video.frame_rate
        log.warning("%s: --deinterlace progressive: writing %s fields a second as frames, with new timestamps",
                    path.name, f"{float(rate * 2):g}" if rate else "the")  # fmt: skip
        return FieldRateSource(reader, side, path, info, field_order(info, config))
    if mode == "frame":
        return DeinterlacedSource(reader, side, path, info, field_order(info, config))
    return FrameSource(reader, side, path, info)
