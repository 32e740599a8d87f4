"""What a probe cannot say about fields: the tagged order, and the measured one where the tag is silent.

``check_fields`` decodes a stream's first pictures once more (a probed file's light open) and judges them with
``io.field_analysis``; ``probe_telecine`` looks for 3:2 pulldown in a 30000/1001 stream's first pictures;
``check_written_fields`` reads a finished output's field order back, from its stream tag and from each frame's
own flags (what ffprobe's ``-show_frames`` shows as ``interlaced_frame`` and ``top_field_first``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from gpen_video.errors import InputError, VerificationError
from gpen_video.io.field_analysis import (
    CODEC_FIELD_ORDER,
    FIELD_CHECK_FRAMES,
    FieldCheck,
    FieldMeter,
    Order,
    TelecineReport,
    detect_telecine,
)
from gpen_video.io.light_open import open_probed
from gpen_video.io.probe import MediaInfo

log = logging.getLogger(__name__)

TELECINE_RATE = Fraction(30000, 1001)
FIELD_CHECK_PLACES = 3  # where the start says nothing: the same again a third and two thirds of the way in


def tagged_order(info: MediaInfo) -> Order:
    """The field order the stream's tag says (``unknown`` where it says nothing)."""
    return CODEC_FIELD_ORDER.get(info.video.metadata.field_order_id, "unknown")


def measure_field_order(
    info: MediaInfo, frames: int = FIELD_CHECK_FRAMES, places: int = FIELD_CHECK_PLACES
) -> FieldCheck:
    """Decode ``frames`` pictures of the video stream from its start (as 8-bit grey) and judge their fields.

    One more open of the file (a probed file's light open: ``io.light_open.open_probed``) and a short read at its
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


WRITTEN_FIELD_FRAMES = 8  # frames of a finished output whose flags are read back


@dataclasses.dataclass(frozen=True)
class WrittenFields:
    """A written video's field order as its stream tag says it and as its first frames' flags say it."""

    tagged: Order
    frames: list[Order | None]  # per frame: progressive, tff, bff; None where the picture cannot tell (flat)

    def mismatch(self, expected: Order) -> str | None:
        """What disagrees with ``expected`` (``tff``/``bff``), in words; None when tag and frames agree."""
        if self.tagged not in ("unknown", expected):  # unknown: a stream with no tag of its own (raw DV)
            return f"its stream is tagged {self.tagged}"
        wrong = [(i, got) for i, got in enumerate(self.frames) if got is not None and got != expected]
        if wrong:
            i, got = wrong[0]
            return f"{len(wrong)} of its first {len(self.frames)} frames are flagged {got} (frame {i} first)"
        return None


def read_written_fields(path: Path, frames: int = WRITTEN_FIELD_FRAMES) -> WrittenFields:
    """The stream's field order tag and the flags of its first ``frames`` frames.

    PyAV 18 reads a frame's interlaced flag but not its top-field-first one; FFmpeg's ``fieldorder=tff`` filter
    tells it: it passes a top-field-first (or progressive) frame through untouched and moves a bottom-field-first
    one by a line, so a frame whose luma comes back changed was flagged bottom first (a picture whose every line
    equals the next cannot tell, and gives None).
    """
    orders: list[Order | None] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tagged = CODEC_FIELD_ORDER.get(int(stream.codec_context.field_order or 0), "unknown")
        probe = _FieldOrderProbe()
        for frame in container.decode(stream):
            orders.append(probe.order(frame))
            if len(orders) >= frames:
                break
    return WrittenFields(tagged, orders)


class _FieldOrderProbe:
    """One ``fieldorder=tff`` graph per picture shape, held for the frames that follow."""

    def __init__(self) -> None:
        self._shape: tuple[int, int, str] | None = None
        self._graph: av.filter.Graph | None = None
        self._ends: tuple[av.filter.context.FilterContext, av.filter.context.FilterContext] | None = None

    def order(self, frame: av.VideoFrame) -> Order | None:
        if not frame.interlaced_frame:
            return "progressive"
        before = frame.to_ndarray(format="gray")
        if np.array_equal(before[:-1], before[1:]):
            return None
        shape = (frame.width, frame.height, frame.format.name)
        if shape != self._shape:
            graph = av.filter.Graph()
            source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                      time_base=frame.time_base or Fraction(1, 25))  # fmt: skip
            reorder, sink = graph.add("fieldorder", "tff"), graph.add("buffersink")
            source.link_to(reorder)
            reorder.link_to(sink)
            graph.configure()
            self._graph, self._shape, self._ends = graph, shape, (source, sink)
        assert self._ends is not None
        self._ends[0].push(frame)
        after = self._ends[1].pull().to_ndarray(format="gray")
        return "tff" if np.array_equal(before, after) else "bff"


def check_written_fields(path: Path, expected: Order) -> None:
    """VerificationError unless the written file at ``path`` says ``expected`` (``tff``/``bff``) in its stream tag
    and in every one of its first frames' flags: a deinterlacer downstream follows the frames' flags, and the
    wrong order there weaves every frame backwards in time, so such a file is never kept as a master."""
    if expected not in ("tff", "bff"):
        return
    try:
        written = read_written_fields(path)
    except av.error.FFmpegError as exc:
        raise VerificationError(f"{path.name}: its fields cannot be read back ({exc}); it was not kept") from exc
    problem = written.mismatch(expected)
    if problem:
        raise VerificationError(f"the output should be interlaced {expected} but {problem}; it was not kept")
