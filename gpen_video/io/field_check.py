"""What a probe cannot say about fields: the tagged order, and the measured one where the tag is silent.

``check_fields`` decodes a stream's first pictures once more (a probed file's light open) and judges them with
``io.field_analysis``; ``probe_telecine`` looks for 3:2 pulldown in a 30000/1001 stream's first pictures.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.errors import InputError
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
