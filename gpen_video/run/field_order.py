"""The field order a run works in, and the output stream it gives: ``--field-order``, else the stream's tag,
else a confident verdict from the first pictures (``io.field_check.check_fields``), else progressive; and the
output as the deinterlace mode and a background upscale make it (``output_info``).
"""

from __future__ import annotations

import dataclasses
import logging

from gpen_video.config import Config
from gpen_video.io.field_analysis import Order
from gpen_video.io.field_check import check_fields, tagged_order
from gpen_video.io.metadata import FIELD_ORDER_IDS, FIELD_ORDERS
from gpen_video.io.probe import MediaInfo

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
    """``info`` with its untagged field order judged on the first pictures (``io.field_check.check_fields``), where
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
