"""Encode frames with their source timestamps beside the input's other streams.

The writer gets decoded frames (the source's own samples when no face changed, converted pictures
otherwise) with their source ``pts``; it encodes them in the source ``time_base`` so VFR stays VFR
and the frame count cannot drift. Every other stream (audio, subtitles, data, attachments, extra
video) goes through ``io.side_streams.SideStreams``: copied packet for packet, converted or left out.
Colour tags, bit depth, pixel aspect, field order, HDR10, rotation, timecode (offset to a range's
start) and chapters are kept.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av

from gpen_video.errors import ConfigError, OutputError
from gpen_video.io.colour import ColourInfo, tag_frame, to_encoder_format
from gpen_video.io.encoding import EncodeSettings, frame_rate, source_alpha_bits
from gpen_video.io.field_analysis import CODEC_FIELD_ORDER
from gpen_video.io.formats import ContainerCaps, container_caps, container_family
from gpen_video.io.frame_phase import FramePhase
from gpen_video.io.metadata import chapters_for_output, offset_timecode
from gpen_video.io.probe import MediaInfo, VideoInfo
from gpen_video.io.side_streams import SideStreams, StreamPlan
from gpen_video.memory import zeroed_heap_blocks

log = logging.getLogger(__name__)

__all__ = ["VideoWriter", "WriteResult", "Writer"]

# Encoders whose time base must be one frame (they reject 1/90000 and the like)
FRAME_RATE_ENCODERS = ("mpeg2video", "mpeg1video", "dvvideo")


@dataclass
class WriteResult:
    frames: int
    pts: list[int]  # output video pts, in ``time_base`` units, in the order written
    time_base: Fraction
    streams: list[StreamPlan] = field(default_factory=list)
    video: EncodeSettings | None = None
    warnings: list[str] = field(default_factory=list)  # video metadata the output could not keep
    side_starts: dict[int, Fraction] = field(default_factory=dict)  # output stream index -> first packet (s)
    aspect_missing: Fraction | None = None  # the pixel aspect the file should carry and does not (Matroska)


class Writer(Protocol):
    """What the run loop needs of an output: ``VideoWriter`` (PyAV) and ``FfmpegWriter`` (the ffmpeg CLI) both
    keep it, so the pipeline never asks which one it holds."""

    def copy_container_metadata(self, source: av.container.InputContainer) -> None: ...

    def write(self, frame: av.VideoFrame, pts: int) -> None: ...

    def write_packets(self, packets: list[av.Packet]) -> None: ...

    def close(self) -> WriteResult: ...

    def abort(self) -> None: ...


def check_video_codec(caps: ContainerCaps, codec: str, suffix: str) -> None:
    """ConfigError (before any work) when FFmpeg says the output container cannot hold ``codec`` video."""
    try:
        av.codec.Codec(codec, "w")
    except (ValueError, av.error.FFmpegError):
        return  # an encoder only the user's ffmpeg binary has: its muxer decides when joining
    if not caps.holds(codec):
        raise ConfigError(
            f"{codec} video cannot go in a {suffix or caps.format_name} file ({caps.format_name} muxer); "
            f"use --video-codec auto, or a .mov or .mkv output"
        )


class VideoWriter:
    """Muxes one encoded video stream plus copies of the input's other streams into ``path``."""

    def __init__(
        self,
        path: Path,
        info: MediaInfo,
        settings: EncodeSettings,
        side_streams: list[av.stream.Stream],
        offset: Fraction = Fraction(0),
        output_format: str | None = None,
    ) -> None:
        self.path = path
        self.info = info
        self.settings = settings
        self.offset = offset  # seconds subtracted from every timestamp (range starts)
        self.colour: ColourInfo = info.video.colour
        try:
            self.container = av.open(str(path), mode="w", format=output_format)
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"{path}: cannot create the output ({exc}); check the extension and folder") from exc
        self.family = container_family(self.container.format.name)
        self.caps = container_caps(self.container.format.name)
        self.warnings: list[str] = [settings.notice] if settings.notice else []
        try:
            check_video_codec(self.caps, settings.codec, path.suffix)
            self.video = self._add_video_stream()
        except BaseException:
            self.container.close()
            raise
        self.side = SideStreams(self.container, self.family, side_streams, offset, video=(info.video, settings))
        self.pts: list[int] = []
        self._tb = info.video.time_base
        self._offset_ticks = round(offset / self._tb)
        encoder_tb = self.video.codec_context.time_base
        self._phase = FramePhase(self._tb, encoder_tb) if encoder_tb and encoder_tb != self._tb else None
        self._closed = False
        self.fields = FieldTagger(CODEC_FIELD_ORDER.get(info.video.metadata.field_order_id, "unknown"))
        self.aspect_missing: Fraction | None = None

    # -- set-up ------------------------------------------------------------------------------------
    def _add_video_stream(self) -> av.VideoStream:
        v = self.info.video
        s = self.settings
        rate = frame_rate(v)
        options = picture_options(s, v)
        if "alpha_bits" in options:  # ProRes 4444: the source's alpha depth, so its levels come back the same
            options["alpha_bits"] = str(source_alpha_bits(self.info) or options["alpha_bits"])
        try:
            stream = self.container.add_stream(s.codec, rate=rate, options=options)
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"cannot use encoder {s.codec}: {exc}") from exc
        stream.width, stream.height = v.width, v.height
        stream.pix_fmt = s.pix_fmt
        stream.time_base = v.time_base
        # encoders tied to a standard frame rate (MPEG-1/2, DV) count time in frames; PyAV rescales the pts
        # and AVI counts frames, so its time base must be one frame too
        fixed_rate = (s.codec in FRAME_RATE_ENCODERS or self.family == "avi") and rate and not v.is_vfr
        if fixed_rate and self.family == "avi":
            stream.time_base = 1 / rate
        stream.codec_context.time_base = 1 / rate if fixed_rate and rate else v.time_base
        if s.bit_rate:
            stream.codec_context.bit_rate = s.bit_rate
        tag_video_stream(stream, v, self.offset)
        try:
            with zeroed_heap_blocks():  # the encoder's buffers (gpen_video/memory.py)
                stream.codec_context.open(strict=False)
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"cannot use encoder {s.codec}: {exc}") from exc
        if v.metadata.is_hdr10 and "master-display" not in s.options.get("x265-params", ""):
            self.warnings.append(f"HDR10 mastering/light-level metadata left out: {s.codec} here cannot carry it")
        return stream

    def copy_container_metadata(self, source: av.container.InputContainer) -> None:
        """Global tags, and the chapters (shifted to a range's start)."""
        for key, value in source.metadata.items():
            if key.lower() not in ("encoder", "major_brand", "minor_version", "compatible_brands", "timecode"):
                self.container.metadata[key] = value
        chapters = chapters_for_output(self.info.video.metadata.chapters, self.offset, None)
        if chapters:
            self.container.set_chapters(chapters)

    # -- writing -----------------------------------------------------------------------------------
    def write(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode ``frame`` at source timestamp ``pts`` (source time_base); converts format if needed."""
        if frame.format.name != self.settings.pix_fmt:
            frame = to_encoder_format(frame, self.colour, self.settings.pix_fmt)
        else:
            frame = _detach(frame)
        if (frame.width, frame.height) != (self.video.width, self.video.height):  # a mid-stream size change
            frame = frame.reformat(self.video.width, self.video.height, self.settings.pix_fmt)
        frame = self.fields.tag(frame)
        tag_frame(frame, self.colour)
        frame.pts = pts - self._offset_ticks
        frame.time_base = self._tb
        self.pts.append(frame.pts)  # before encode(): PyAV rebases the frame to the encoder's time base
        if self._phase is not None:  # a frame-counting encoder: its grid's rounding kept off the times
            frame.pts = self._phase.to_encoder(frame.pts)
        try:
            with zeroed_heap_blocks():  # frames x264 adds to its pool start zeroed, as in a fresh process
                packets = self.video.encode(frame)
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.path.name}: the {self.settings.codec} encoder failed ({exc})") from exc
        self.container.mux(self._phase.from_encoder(packets) if self._phase is not None else packets)

    def write_packets(self, packets: list[av.Packet]) -> None:
        self.side.write(packets)

    @property
    def plans(self) -> list[StreamPlan]:
        return self.side.plans

    def close(self) -> WriteResult:
        """Flush the encoder and finish the file."""
        if not self._closed:
            self._closed = True
            try:
                with zeroed_heap_blocks():
                    packets = self.video.encode(None)
                self.container.mux(self._phase.from_encoder(packets) if self._phase is not None else packets)
                self.side.flush()
            except av.error.FFmpegError as exc:
                raise OutputError(f"{self.path.name}: the output could not be finished ({exc})") from exc
            finally:
                try:
                    self.container.close()
                except av.error.FFmpegError as exc:  # the trailer (MOV moov, MKV cues) could not be written
                    raise OutputError(f"{self.path.name}: the output could not be finished ({exc})") from exc
            self._check_aspect_kept()
        return WriteResult(len(self.pts), self.pts, self._tb, self.plans, self.settings, self.warnings,
                           self.side.starts, self.aspect_missing)  # fmt: skip

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(av.error.FFmpegError):
                self.container.close()

    def _check_aspect_kept(self) -> None:
        """Note the source's pixel aspect where the finished file does not carry it (PyAV 18 sets no stream aspect,
        so a codec that does not store one itself, such as FFV1 in Matroska, loses it): the sink sets it."""
        v = self.info.video
        wanted = v.metadata.sample_aspect_ratio or v.sample_aspect_ratio
        if not wanted or wanted == 1:
            return
        try:
            with av.open(str(self.path)) as written:
                got = written.streams.video[0].sample_aspect_ratio
        except (av.error.FFmpegError, IndexError):
            return
        if not got or Fraction(got) != Fraction(wanted):
            self.aspect_missing = Fraction(wanted)


class FieldTagger:
    """Each frame's interlaced and top-field-first flags as the output's field order says (``tff``/``bff``).

    PyAV 18 can neither set ``AVFrame.flags`` nor read the top-field-first one, and a frame converted or composed
    in Python has neither: x264 then switches its stream to bottom field first at the first frame (it follows the
    frame's flag), and FFV1 stores each frame as progressive. FFmpeg's ``setfield`` filter sets both flags; a
    frame goes through it by reference (no copy of the samples). Progressive and unknown orders are left as they
    are.
    """

    def __init__(self, order: str) -> None:
        self.order = order if order in ("tff", "bff") else None
        self._shape: tuple[int, int, str] | None = None
        self._graph: av.filter.Graph | None = None  # held: its filter contexts do not keep it alive
        self._source: av.filter.context.FilterContext | None = None
        self._sink: av.filter.context.FilterContext | None = None

    def tag(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self.order is None:
            return frame
        shape = (frame.width, frame.height, frame.format.name)
        if shape != self._shape:
            graph = av.filter.Graph()
            self._source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                            time_base=frame.time_base or Fraction(1, 25))  # fmt: skip
            setfield = graph.add("setfield", self.order)
            self._sink = graph.add("buffersink")
            self._source.link_to(setfield)
            setfield.link_to(self._sink)
            graph.configure()
            self._graph, self._shape = graph, shape
        assert self._source is not None and self._sink is not None
        self._source.push(frame)
        return self._sink.pull()


def picture_options(settings: EncodeSettings, video: VideoInfo) -> dict[str, str]:
    """Encoder options plus what the codec context must carry for the muxer: field order, interlaced coding."""
    options = dict(settings.options)
    meta = video.metadata
    if meta.chroma_location:  # the encoder signals it (H.264/HEVC VUI), the muxer stores it
        options.setdefault("chroma_sample_location", meta.chroma_location)
    if meta.field_order_id:
        options.setdefault("field_order", str(meta.field_order_id))
        if meta.interlaced and _codes_fields(settings):
            options.setdefault("flags", "+ildct+ilme")
            options.setdefault("top", "1" if meta.field_order_id in (2, 5) else "0")  # TT, BT: top displayed first
    return options


def _codes_fields(settings: EncodeSettings) -> bool:
    """Whether the encoder codes fields (interlaced DCT); DNxHR profiles cannot (FFmpeg refuses to open)."""
    if settings.codec == "dnxhd":
        return settings.options.get("profile", "dnxhd") == "dnxhd"
    return settings.codec in ("prores_ks", "mpeg2video", "libx264", "dvvideo")


def tag_video_stream(stream: av.VideoStream, video: VideoInfo, offset: Fraction = Fraction(0)) -> None:
    """The source's colour tags, pixel aspect, display rotation, tags and timecode on an output video stream."""
    cc = stream.codec_context
    if cc is not None:
        colour = video.colour
        with contextlib.suppress(AttributeError, ValueError):
            cc.colorspace = colour.matrix_id
            cc.color_range = colour.range_id if colour.range_id else (2 if colour.range == "pc" else 1)
            cc.color_primaries = colour.primaries_id
            cc.color_trc = colour.transfer_id
        sar = video.metadata.sample_aspect_ratio or video.sample_aspect_ratio
        if sar:
            with contextlib.suppress(AttributeError, ValueError):
                cc.sample_aspect_ratio = sar
            with contextlib.suppress(AttributeError, ValueError):  # Matroska's display size comes from the stream's
                stream.sample_aspect_ratio = sar
    for key, value in video.metadata.tags.items():
        if key.lower() not in ("timecode", "rotate"):
            stream.metadata[key] = value
    if video.rotation:
        stream.set_display_rotation(video.rotation)
    if video.timecode:
        stream.metadata["timecode"] = offset_timecode(video.timecode, video.frame_rate, offset)


def _detach(frame: av.VideoFrame) -> av.VideoFrame:
    """Drop per-frame side data (display matrix, SEI) the encoder must not re-apply."""
    try:
        for kind in list(frame.side_data.keys()):
            del frame.side_data[kind]
    except (AttributeError, KeyError, TypeError, ValueError):
        pass
    return frame
