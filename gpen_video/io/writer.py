"""Encode frames with their source timestamps and remux every other stream untouched.

The writer gets decoded frames (the source's own samples when no face changed, converted pictures
otherwise) with their source ``pts``; it encodes them in the source ``time_base`` so VFR stays VFR
and the frame count cannot drift. Every other stream (audio, subtitles, data, attachments, extra
video) is copied packet for packet with ``add_stream_from_template(opaque=True)``. What the output
container can hold is asked of FFmpeg (``io/formats.py`` and a trial header on an in-memory file),
never kept in tables: a stream it cannot hold is re-encoded (audio) or left out (anything else), and
``StreamPlan.reason`` says which. Colour tags, bit depth, pixel aspect, field order, HDR10,
rotation, timecode (offset to a range's start), stream tags and chapters are kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av

from gpen_video.errors import ConfigError, OutputError
from gpen_video.io.colour import ColourInfo, tag_frame, to_encoder_format
from gpen_video.io.encoding import EncodeSettings, frame_rate
from gpen_video.io.formats import ContainerCaps, container_caps, container_family
from gpen_video.io.metadata import chapters_for_output, offset_timecode
from gpen_video.io.probe import MediaInfo, VideoInfo

log = logging.getLogger(__name__)

__all__ = ["SideStreams", "StreamPlan", "VideoWriter", "WriteResult", "Writer", "container_family", "copy_stream"]

# Encoders tried, in order, when an audio codec cannot be copied into the output (after the muxer's default).
_AUDIO_TARGETS = ("aac", "libopus", "flac", "pcm_s16le", "mp2", "ac3")
# Encoders whose time base must be one frame (they reject 1/90000 and the like)
_FRAME_RATE_ENCODERS = ("mpeg2video", "mpeg1video", "dvvideo")
# Stream types whose payload is carried in the header (no packets)
_HEADER_ONLY = ("attachment",)


@dataclass
class StreamPlan:
    """What happens to one input stream in the output."""

    input_index: int
    type: str
    codec: str | None
    action: str  # copy | encode | drop | timecode
    reason: str = ""
    output_index: int | None = None


@dataclass
class WriteResult:
    frames: int
    pts: list[int]  # output video pts, in ``time_base`` units, in the order written
    time_base: Fraction
    streams: list[StreamPlan] = field(default_factory=list)
    video: EncodeSettings | None = None
    warnings: list[str] = field(default_factory=list)  # video metadata the output could not keep
    side_starts: dict[int, Fraction] = field(default_factory=dict)  # output stream index -> first packet (s)


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
        self.warnings: list[str] = []
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
        self._closed = False

    # -- set-up ------------------------------------------------------------------------------------
    def _add_video_stream(self) -> av.VideoStream:
        v = self.info.video
        s = self.settings
        rate = frame_rate(v)
        try:
            stream = self.container.add_stream(s.codec, rate=rate, options=picture_options(s, v))
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"cannot use encoder {s.codec}: {exc}") from exc
        stream.width, stream.height = v.width, v.height
        stream.pix_fmt = s.pix_fmt
        stream.time_base = v.time_base
        # encoders tied to a standard frame rate (MPEG-1/2, DV) count time in frames; PyAV rescales the pts
        # and AVI counts frames, so its time base must be one frame too
        fixed_rate = (s.codec in _FRAME_RATE_ENCODERS or self.family == "avi") and rate and not v.is_vfr
        if fixed_rate and self.family == "avi":
            stream.time_base = 1 / rate
        stream.codec_context.time_base = 1 / rate if fixed_rate and rate else v.time_base
        if s.bit_rate:
            stream.codec_context.bit_rate = s.bit_rate
        tag_video_stream(stream, v, self.offset)
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
        tag_frame(frame, self.colour)
        frame.pts = pts - self._offset_ticks
        frame.time_base = self._tb
        self.pts.append(frame.pts)  # before encode(): PyAV rebases the frame to the encoder's time base
        try:
            packets = self.video.encode(frame)
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.path.name}: the {self.settings.codec} encoder failed ({exc})") from exc
        self.container.mux(packets)

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
                self.container.mux(self.video.encode(None))
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
                           self.side.starts)  # fmt: skip

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(av.error.FFmpegError):
                self.container.close()

    def _check_aspect_kept(self) -> None:
        """Say so when the finished file does not carry the source's pixel aspect (PyAV 18 sets no stream
        aspect, so a codec that does not store one itself, such as FFV1 in Matroska, loses it)."""
        v = self.info.video
        wanted = v.metadata.sample_aspect_ratio or v.sample_aspect_ratio
        if not wanted or wanted == 1:
            return
        try:
            with av.open(str(self.path)) as written:
                got = written.streams.video[0].sample_aspect_ratio
        except (av.error.FFmpegError, IndexError):
            return
        if got and Fraction(got) == Fraction(wanted):
            return
        dar = Fraction(wanted) * Fraction(v.width, v.height)
        message = (
            f"the pixel aspect {wanted.numerator}:{wanted.denominator} could not be written for {self.settings.codec} "
            f"in {self.container.format.name} (PyAV sets no stream aspect), so the output plays with square pixels; "
            f"set it afterwards with: ffmpeg -i OUTPUT -c copy -aspect {dar.numerator}:{dar.denominator} FIXED"
        )
        self.warnings.append(message)  # said with the run's other warnings, even with -q


class SideStreams:
    """The input's other streams in an output container: copied, re-encoded or left out, with a reason.

    Packets are shifted by ``offset`` (the range start) and copied bit for bit. Whether the container
    holds a stream is asked of FFmpeg: the codec query behind ``add_stream_from_template`` and a trial
    header on an in-memory file of the same format (with the output's video stream when ``video`` is
    given). Audio it cannot hold is re-encoded to the muxer's own default (PyAV's encoder resamples and
    re-frames); other streams are left out.
    """

    def __init__(
        self,
        container: av.container.OutputContainer,
        family: str,
        streams: list[av.stream.Stream],
        offset: Fraction,
        video: tuple[VideoInfo, EncodeSettings] | None = None,
    ) -> None:
        self.container = container
        self.family = family
        self.offset = offset
        self.caps = container_caps(container.format.name)
        self._video = video
        self._copy_map: dict[int, av.stream.Stream] = {}
        self._transcoders: dict[int, _AudioTranscoder | _SubtitleConverter] = {}
        self.starts: dict[int, Fraction] = {}
        self.plans = [self._add(stream) for stream in streams]

    def _add(self, stream: av.stream.Stream) -> StreamPlan:
        codec = stream.codec_context.name if stream.codec_context is not None else None
        plan = StreamPlan(stream.index, stream.type, codec, "copy")
        if (
            stream.type == "data"
            and codec is None
            and stream.metadata.get("handler_name", "").lower().startswith("timecode")
        ):
            plan.action, plan.reason = "timecode", "timecode track rewritten from the source timecode"
            return plan
        refused = self._refusal(stream)
        if refused is None:
            out = copy_stream(self.container, stream)
            copy_metadata(stream, out)
            if stream.type not in _HEADER_ONLY:
                self._copy_map[stream.index] = out
            plan.output_index = out.index
            return plan
        if stream.type == "audio":
            target = self._audio_target(stream)
            if target is not None:
                out = self.container.add_stream(target, rate=stream.codec_context.sample_rate)
                with contextlib.suppress(AttributeError, ValueError):
                    out.layout = _ordered_layout(stream.codec_context.layout)
                copy_metadata(stream, out)
                self._transcoders[stream.index] = _AudioTranscoder(stream, out)
                plan.action, plan.output_index = "encode", out.index
                plan.reason = f"{codec} cannot go in {self.caps.format_name} ({refused}); re-encoded to {target}"
                log.warning("audio stream #%d: %s", stream.index, plan.reason)
                return plan
        if stream.type == "subtitle" and _is_text_subtitle(codec) and self.caps.holds("mov_text"):
            try:
                converter = _SubtitleConverter(self.container, stream)
            except (av.error.FFmpegError, ValueError) as exc:
                refused = f"{refused}; converting it to mov_text failed: {exc}"
            else:
                copy_metadata(stream, converter.out)
                self._transcoders[stream.index] = converter
                plan.action, plan.output_index = "encode", converter.out.index
                plan.reason = f"{codec} cannot go in {self.caps.format_name} ({refused}); converted to mov_text"
                log.warning("subtitle stream #%d: %s", stream.index, plan.reason)
                return plan
        plan.action, plan.reason = "drop", f"{self.caps.format_name} cannot hold {codec or stream.type} ({refused})"
        log.warning("stream #%d (%s): left out, %s", stream.index, stream.type, plan.reason)
        return plan

    def _refusal(self, stream: av.stream.Stream) -> str | None:
        """Why FFmpeg will not put ``stream`` (copied) in this container, or None when it will."""
        trial = av.open(io.BytesIO(), "w", format=self.caps.format_name)
        try:
            try:
                if self._video is not None:
                    v, settings = self._video
                    vs = trial.add_stream(settings.codec, rate=v.frame_rate or 25, options=dict(settings.options))
                    vs.width, vs.height, vs.pix_fmt = v.width, v.height, settings.pix_fmt
                    if settings.bit_rate:
                        vs.codec_context.bit_rate = settings.bit_rate
                copied = copy_stream(trial, stream)
            except (av.error.FFmpegError, ValueError, TypeError) as exc:
                return str(exc).split(";")[0]
            try:
                trial.start_encoding()
            except (av.error.FFmpegError, ValueError) as exc:
                return f"the muxer refuses it: {exc}"
            if _unordered_pcm(stream):
                # a PCM layout of unspecified order (a WAV without a channel mask) passes the header but MP4's
                # trailer refuses it: try the trailer on one packet of silence
                silence = av.Packet(bytes(stream.codec_context.channels * stream.codec_context.format.bytes * 1024))
                silence.pts = silence.dts = 0
                silence.time_base = Fraction(1, stream.codec_context.sample_rate)
                silence.stream = copied
                try:
                    trial.mux(silence)
                    trial.close()
                except (av.error.FFmpegError, ValueError) as exc:
                    return f"the muxer refuses its channel layout ({stream.codec_context.layout.name}): {exc}"
        finally:
            with contextlib.suppress(av.error.FFmpegError, ValueError):  # a trailer on an empty trial file
                trial.close()
        return None

    def _audio_target(self, stream: av.stream.Stream) -> str | None:
        default = self.caps.default_audio
        for name in (f"lib{default}", default, *_AUDIO_TARGETS):
            try:
                encoder = av.codec.Codec(name, "w")
            except (ValueError, av.error.FFmpegError):
                continue
            if self.caps.holds(encoder.name) and name != "none":
                return encoder.name
        return None

    def write(self, packets: list[av.Packet]) -> None:
        """Copy (or re-encode) packets, shifted by the range offset."""
        for packet in packets:
            index = packet.stream.index
            if index in self._transcoders:
                self._transcoders[index].push(packet, self.offset, self.container)
                continue
            out = self._copy_map.get(index)
            if out is None or packet.size == 0:
                continue
            shift = round(self.offset / packet.time_base) if self.offset else 0
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None and ts < 0 and not self.caps.reorders:
                # AVI-like muxers would shift the whole file to start the audio's priming at 0
                self._note_skipped_priming(index)
                continue
            if out.index not in self.starts and ts is not None:
                self.starts[out.index] = ts * packet.time_base
            packet.stream = out
            self.container.mux(packet)

    def _note_skipped_priming(self, index: int) -> None:
        for plan in self.plans:
            if plan.input_index == index and "before the video's start" not in plan.reason:
                plan.reason = (plan.reason + "; " if plan.reason else "") + (
                    f"packets before the video's start left out ({self.caps.format_name} cannot start earlier)"
                )
                log.warning("stream #%d: %s", index, plan.reason)

    @property
    def has_streams(self) -> bool:
        return bool(self._copy_map or self._transcoders)

    def flush(self) -> None:
        for transcoder in self._transcoders.values():
            transcoder.flush(self.container)


def copy_metadata(src: av.stream.Stream, dst: av.stream.Stream) -> None:
    """A copied stream keeps its language, title, handler, file name and dispositions (default, forced, ...)."""
    for key, value in src.metadata.items():
        if key.lower() not in ("duration", "encoder", "_statistics_tags", "number_of_frames"):
            dst.metadata[key] = value
    with contextlib.suppress(AttributeError, ValueError):
        dst.disposition = src.disposition


def picture_options(settings: EncodeSettings, video: VideoInfo) -> dict[str, str]:
    """Encoder options plus what the codec context must carry for the muxer: field order, interlaced coding."""
    options = dict(settings.options)
    meta = video.metadata
    if meta.chroma_location:  # the encoder signals it (H.264/HEVC VUI), the muxer stores it
        options.setdefault("chroma_sample_location", meta.chroma_location)
    if meta.field_order_id:
        options.setdefault("field_order", str(meta.field_order_id))
        if meta.interlaced and settings.codec in ("prores_ks", "mpeg2video", "dnxhd", "libx264", "dvvideo"):
            options.setdefault("flags", "+ildct+ilme")
            options.setdefault("top", "1" if meta.field_order_id in (2, 4) else "0")
    return options


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


def copy_stream(container: av.container.OutputContainer, template: av.stream.Stream) -> av.stream.Stream:
    """A stream-copy output stream with ``template``'s codec parameters (FFmpeg's query decides if it fits).

    ``opaque=True`` copies the codec parameters as they are, so codecs this FFmpeg can only decode
    (AV1 via libdav1d, TrueHD, ...) copy as well as any; codec-less streams (attachments, data) are
    handled by PyAV the same way. A video template keeps its frame rate (else Matroska says 1000 fps).
    """
    stream = container.add_stream_from_template(template, opaque=True)
    if template.type == "video" and stream.codec_context is not None:
        rate = template.average_rate or template.guessed_rate
        if rate:
            with contextlib.suppress(AttributeError, ValueError):
                stream.codec_context.framerate = rate
    return stream


def _detach(frame: av.VideoFrame) -> av.VideoFrame:
    """Drop per-frame side data (display matrix, SEI) the encoder must not re-apply."""
    try:
        for kind in list(frame.side_data.keys()):
            del frame.side_data[kind]
    except (AttributeError, KeyError, TypeError, ValueError):
        pass
    return frame


def _is_text_subtitle(codec: str | None) -> bool:
    if codec is None:
        return False
    try:
        return bool(av.codec.Codec(codec, "r").text_sub)
    except (ValueError, av.error.FFmpegError):
        return False


class _SubtitleConverter:
    """Text subtitles (SubRip, ASS, WebVTT) into ``mov_text`` for MP4/MOV, as the ffmpeg CLI converts them: each
    packet decoded to its ASS events and encoded again, with the source's timing (shifted by the range offset).
    Styling beyond what mov_text holds (ASS positioning, fonts) is lost, as with the CLI."""

    def __init__(self, container: av.container.OutputContainer, source: av.stream.Stream) -> None:
        self.decoder = av.CodecContext.create(source.codec_context.name, "r")
        self.decoder.extradata = source.codec_context.extradata  # ASS: the script header
        self.decoder.open()  # fills subtitle_header, which the mov_text encoder needs before the file's header
        self.out = container.add_stream("mov_text")
        self.out.codec_context.subtitle_header = self.decoder.subtitle_header
        self.out.codec_context.time_base = source.time_base
        self.out.time_base = source.time_base

    def push(self, packet: av.Packet, offset: Fraction, container: av.container.OutputContainer) -> None:
        if packet.size == 0 or packet.pts is None:
            return
        try:
            subtitle = self.decoder.decode2(packet)
        except av.error.FFmpegError as exc:
            log.debug("subtitle conversion: a damaged packet skipped (%s)", exc)
            return
        if subtitle is None or not len(subtitle):
            return
        pts = packet.pts - (round(offset / packet.time_base) if offset else 0)
        if pts < 0:
            return
        encoded = self.out.codec_context.encode_subtitle(subtitle)
        encoded.pts = encoded.dts = pts
        encoded.duration = packet.duration
        encoded.time_base = packet.time_base
        encoded.stream = self.out
        container.mux(encoded)

    def flush(self, container: av.container.OutputContainer) -> None:
        return None


def _unordered_pcm(stream: av.stream.Stream) -> bool:
    cc = stream.codec_context
    return (
        stream.type == "audio"
        and cc is not None
        and cc.name.startswith("pcm_")
        and cc.layout.name.endswith(" channels")
    )


def _ordered_layout(layout: av.AudioLayout) -> av.AudioLayout:
    """A layout muxers accept: a WAV without a channel mask says only "2 channels"; take FFmpeg's default
    layout for that count (stereo), as the ffmpeg CLI does when it encodes such a file."""
    default = _DEFAULT_LAYOUTS.get(len(layout.channels))
    if layout.name.endswith(" channels") and default:  # FFmpeg's name for an unspecified order
        return av.AudioLayout(default)
    return layout


# av_channel_layout_default()'s choice per channel count (PyAV 18 builds layouts from names only)
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


class _AudioTranscoder:
    """Decode one side stream's packets and re-encode them for a container that cannot hold the codec.

    The timestamps are the source's (shifted by the range offset), made contiguous in samples; PyAV's
    encoder resamples to its own format, layout and rate and re-frames to its frame size.
    """

    def __init__(self, source: av.stream.Stream, out: av.AudioStream) -> None:
        self.decoder = av.CodecContext.create(source.codec_context.name, "r")
        self.decoder.extradata = source.codec_context.extradata
        self.decoder.sample_rate = source.codec_context.sample_rate
        self.decoder.layout = source.codec_context.layout
        self.decoder.format = source.codec_context.format
        self.out = out
        self.rate = source.codec_context.sample_rate
        self.next_pts: int | None = None
        self._flushed = False

    def push(self, packet: av.Packet, offset: Fraction, container: av.container.OutputContainer) -> None:
        if packet.size == 0:  # the demuxer's end-of-stream packet: flush() does that once
            return
        try:
            frames = self.decoder.decode(packet)
        except av.error.FFmpegError as exc:
            log.debug("audio re-encode: a damaged packet skipped (%s)", exc)
            return
        for frame in frames:
            self._encode(frame, offset, container)

    def _encode(self, frame: av.AudioFrame, offset: Fraction, container: av.container.OutputContainer) -> None:
        if self.next_pts is None:
            start = frame.pts * frame.time_base if frame.pts is not None and frame.time_base else Fraction(0)
            self.next_pts = round((start - offset) * self.rate)
        frame.pts = self.next_pts
        frame.time_base = Fraction(1, self.rate)
        self.next_pts += frame.samples
        container.mux(self.out.encode(frame))

    def flush(self, container: av.container.OutputContainer) -> None:
        if self._flushed:
            return
        self._flushed = True
        with contextlib.suppress(EOFError, av.error.FFmpegError):
            for frame in self.decoder.decode(None):
                self._encode(frame, Fraction(0), container)
        container.mux(self.out.encode(None))
