"""The video stream's picture metadata beyond colour: aspect, field order, HDR10, tags; chapters, attachments.

``video_metadata`` reads what the container and the first decoded frame say (the stream's sample
aspect ratio where the container stores it, MOV ``pasp`` or Matroska display size, else the
codec's; field order; HDR10 mastering display and content light level from the frame's side data;
title, language and disposition), so the writer can put each back and ``probe`` can show it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

FIELD_ORDERS = {0: None, 1: "progressive", 2: "top field first", 3: "bottom field first",
                4: "top field first (bottom coded first)", 5: "bottom field first (top coded first)"}  # fmt: skip
FIELD_ORDER_IDS = {"progressive": 1, "tt": 2, "bb": 3, "tb": 4, "bt": 5}


@dataclass(frozen=True)
class MasteringDisplay:
    """SMPTE ST 2086: primaries and white point in CIE xy, luminance in cd/m²."""

    red: tuple[Fraction, Fraction]
    green: tuple[Fraction, Fraction]
    blue: tuple[Fraction, Fraction]
    white: tuple[Fraction, Fraction]
    min_luminance: Fraction
    max_luminance: Fraction

    def x265(self) -> str:
        """As x265's ``master-display`` parameter (chromaticities in 1/50000, luminance in 1/10000 cd/m²)."""

        def xy(p: tuple[Fraction, Fraction]) -> str:
            return f"({round(p[0] * 50000)},{round(p[1] * 50000)})"

        return (f"G{xy(self.green)}B{xy(self.blue)}R{xy(self.red)}WP{xy(self.white)}"
                f"L({round(self.max_luminance * 10000)},{round(self.min_luminance * 10000)})")  # fmt: skip

    def describe(self) -> str:
        return f"mastering display {float(self.min_luminance):g}-{float(self.max_luminance):g} cd/m²"


@dataclass(frozen=True)
class ContentLight:
    max_cll: int
    max_fall: int


@dataclass(frozen=True)
class Chapter:
    start: Fraction  # seconds
    end: Fraction
    title: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    index: int
    filename: str | None
    mimetype: str | None
    size: int


@dataclass
class VideoMetadata:
    """What the main video stream carries besides pixels, timing and colour."""

    sample_aspect_ratio: Fraction | None = None  # pixel aspect; None when square or unknown
    display_aspect_ratio: Fraction | None = None
    field_order: str | None = None  # in words; None when unknown
    field_order_id: int = 0  # FFmpeg's AVFieldOrder
    chroma_location: str | None = None  # FFmpeg's name (left, topleft, ...); None: unspecified or unknown
    mastering_display: MasteringDisplay | None = None
    content_light: ContentLight | None = None
    title: str | None = None
    language: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    chapters: list[Chapter] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def is_hdr10(self) -> bool:
        return self.mastering_display is not None or self.content_light is not None

    @property
    def interlaced(self) -> bool:
        return self.field_order_id >= 2

    def describe(self) -> list[str]:
        lines = []
        sar = self.sample_aspect_ratio or Fraction(1)
        dar = f", display {self.display_aspect_ratio.numerator}:{self.display_aspect_ratio.denominator}" if (
            self.display_aspect_ratio) else ""  # fmt: skip
        lines.append(f"aspect: pixel {sar.numerator}:{sar.denominator}{dar}")
        order = self.field_order or "field order not tagged"
        lines.append(f"fields: {'interlaced, ' if self.interlaced else ''}{order}")
        if self.mastering_display:
            lines.append(f"HDR: {self.mastering_display.describe()}")
        if self.content_light:
            lines.append(f"HDR: MaxCLL {self.content_light.max_cll}, MaxFALL {self.content_light.max_fall} cd/m²")
        for chapter in self.chapters:
            lines.append(
                f"chapter {float(chapter.start):.3f}-{float(chapter.end):.3f}s: {chapter.title or ''}".rstrip()
            )
        for a in self.attachments:
            lines.append(f"attachment #{a.index}: {a.filename or '?'} ({a.mimetype or 'unknown type'}, {a.size} bytes)")
        return lines


_STREAM_TAGS_NOT_COPIED = {"duration", "encoder", "_statistics_tags", "number_of_frames", "number_of_bytes",
                           "_statistics_writing_app", "_statistics_writing_date_utc", "bps", "handler_name",
                           "vendor_id", "creation_time"}  # fmt: skip


def video_metadata(
    container: av.container.InputContainer, stream: av.VideoStream, first: av.VideoFrame
) -> VideoMetadata:
    """Read ``stream``'s metadata; ``first`` is its first decoded frame (for HDR side data)."""
    cc = stream.codec_context
    sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
    sar = Fraction(sar) if sar and Fraction(sar) > 0 else None
    width, height = cc.width or first.width, cc.height or first.height
    dar = Fraction(width, height) * (sar or 1) if width and height else None
    order = int(cc.field_order or 0) if isinstance(cc.field_order, int) else 0
    if order <= 1 and first.interlaced_frame:
        order = 2  # the frames say interlaced where the container did not
    meta = VideoMetadata(
        sample_aspect_ratio=sar if sar != 1 else None,
        display_aspect_ratio=dar,
        field_order=FIELD_ORDERS.get(order),
        field_order_id=order,
        title=stream.metadata.get("title"),
        language=stream.metadata.get("language"),
        tags={k: v for k, v in stream.metadata.items() if k.lower() not in _STREAM_TAGS_NOT_COPIED},
        chroma_location=read_chroma_location(container.name, stream.index),
        chapters=read_chapters(container),
        attachments=[
            Attachment(s.index, s.metadata.get("filename"), s.metadata.get("mimetype"), _extradata_size(s))
            for s in container.streams
            if s.type == "attachment"
        ],
    )
    for item in _side_data(first):
        kind = str(item.type).rsplit(".", 1)[-1]
        if kind == "MASTERING_DISPLAY_METADATA":
            meta.mastering_display = _mastering_display(bytes(item))
        elif kind == "CONTENT_LIGHT_LEVEL":
            cll, fall = struct.unpack("<II", bytes(item)[:8])
            meta.content_light = ContentLight(cll, fall)
    return meta


def read_chroma_location(path: str, index: int) -> str | None:
    """The stream's chroma location as FFmpeg names it, asked of ``ffprobe`` (PyAV 18 exposes none); None when
    no ffprobe is on PATH, the file is not a plain file, or the stream leaves it unspecified. ffprobe reads
    the header and its probe packets only."""
    ffprobe = shutil.which("ffprobe")
    if not ffprobe or not Path(path).is_file():
        return None
    command = [ffprobe, "-v", "error", "-select_streams", str(index), "-show_entries", "stream=chroma_location",
               "-of", "csv=p=0", path]  # fmt: skip
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = next((line.strip().rstrip(",") for line in out.splitlines() if line.strip()), "")  # TS: once a program
    return found if found and found not in ("unspecified", "N/A") else None


def read_chapters(container: av.container.InputContainer) -> list[Chapter]:
    out = []
    for ch in container.chapters():
        tb = Fraction(ch["time_base"])
        tags = dict(ch.get("metadata") or {})
        out.append(Chapter(ch["start"] * tb, ch["end"] * tb, tags.get("title"), tags))
    return out


def chapters_for_output(chapters: list[Chapter], offset: Fraction, end: Fraction | None) -> list[dict[str, Any]]:
    """PyAV ``set_chapters`` entries for a range starting at ``offset`` (seconds): shifted and clipped."""
    tb = Fraction(1, 1000)
    out = []
    for i, ch in enumerate(chapters):
        start, stop = ch.start - offset, ch.end - offset
        if end is not None:
            stop = min(stop, end - offset)
        if stop <= 0 or (end is not None and start >= end - offset):
            continue
        start = max(start, Fraction(0))
        out.append({"id": i + 1, "start": round(start / tb), "end": round(stop / tb), "time_base": tb,
                    "metadata": dict(ch.tags)})  # fmt: skip
    return out


def offset_timecode(timecode: str, rate: Fraction | None, seconds: Fraction) -> str:
    """``HH:MM:SS:FF`` moved on by ``seconds`` (a partial restore starts later); drop-frame kept as written."""
    if not seconds or not rate:
        return timecode
    sep = ";" if ";" in timecode else ":"
    parts = timecode.replace(";", ":").split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return timecode
    fps = round(rate)
    h, m, s, f = (int(p) for p in parts)
    total = ((h * 60 + m) * 60 + s) * fps + f + round(seconds * rate)
    f, total = total % fps, total // fps
    s, total = total % 60, total // 60
    m, h = total % 60, (total // 60) % 24
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{f:02d}"


def _side_data(frame: av.VideoFrame) -> list[Any]:
    """The frame's side data entries (PyAV 18 iterates over the entries, PyAV 19 over their types)."""
    from av.sidedata.sidedata import SideData

    try:
        container = frame.side_data
        return [entry if isinstance(entry, SideData) else container[entry] for entry in container]
    except (AttributeError, TypeError, ValueError, KeyError):
        return []


def _mastering_display(raw: bytes) -> MasteringDisplay | None:
    """AVMasteringDisplayMetadata: primaries[3][2], white[2], min, max as AVRationals, then two has_ flags."""
    if len(raw) < 88:
        return None
    values = struct.unpack("<20i2i", raw[:88])
    q = [Fraction(values[i], values[i + 1]) if values[i + 1] else Fraction(0) for i in range(0, 20, 2)]
    has_primaries, has_luminance = values[20], values[21]
    if not (has_primaries or has_luminance):
        return None
    return MasteringDisplay((q[0], q[1]), (q[2], q[3]), (q[4], q[5]), (q[6], q[7]), q[8], q[9])


def _extradata_size(stream: av.stream.Stream) -> int:
    try:
        return int(stream.codec_context.extradata_size) if stream.codec_context is not None else 0
    except AttributeError:
        return 0
