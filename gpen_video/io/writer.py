"""Encode frames with their source timestamps and remux every other stream untouched.

The writer gets decoded frames (the source's own samples when no face changed, converted pictures
otherwise) with their source ``pts``; it encodes them in the source ``time_base`` so VFR stays VFR
and the frame count cannot drift. Audio, subtitle and data packets are copied bit for bit; only a
codec the output container cannot hold is re-encoded (audio) or left out (subtitles, data), and the
writer says which in ``StreamPlan.reason``. Colour tags, bit depth, rotation and timecode are kept.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.errors import ConfigError, OutputError
from gpen_video.io.colour import ColourInfo, tag_frame, to_encoder_format
from gpen_video.io.encoding import EncodeSettings
from gpen_video.io.probe import MediaInfo, VideoInfo

log = logging.getLogger(__name__)

# What common delivery containers can hold by stream copy; anything else is assumed to be fine.
_CONTAINER_AUDIO = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac", "mp2", "dts", "truehd"},
    "mov": {"aac", "mp3", "ac3", "eac3", "alac", "mp2", "flac", "opus", "pcm_s16le", "pcm_s16be", "pcm_s24le",
            "pcm_s24be", "pcm_s32le", "pcm_s32be", "pcm_f32le", "pcm_f32be", "pcm_u8", "pcm_alaw", "pcm_mulaw"},
    "webm": {"opus", "vorbis"},
}  # fmt: skip
_CONTAINER_SUBTITLES = {
    "mp4": {"mov_text"},
    "mov": {"mov_text"},
    "webm": {"webvtt"},
    "matroska": {"subrip", "ass", "ssa", "webvtt", "hdmv_pgs_subtitle", "dvd_subtitle", "dvb_subtitle", "text"},
}
_AUDIO_FALLBACK = {"mp4": "aac", "mov": "aac", "webm": "libopus"}
VIDEO_IN_CONTAINER = {
    "mp4": {"libx264", "libx265", "libsvtav1", "libaom-av1", "libvpx-vp9", "h264_nvenc", "hevc_nvenc", "mpeg4"},
    "webm": {"libvpx", "libvpx-vp9", "libsvtav1", "libaom-av1"},
}


def container_family(format_name: str) -> str:
    """Collapse FFmpeg muxer names (``mov,mp4,m4a,...``, ``ipod``) to the families above."""
    name = format_name.split(",")[0]
    return {"ipod": "mp4", "m4v": "mp4", "3gp": "mp4", "matroska": "matroska", "webm": "webm"}.get(name, name)


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
        if self.family in VIDEO_IN_CONTAINER and settings.codec not in VIDEO_IN_CONTAINER[self.family]:
            self.container.close()
            raise ConfigError(
                f"{settings.codec} video cannot go in a .{path.suffix.lstrip('.')} file here; "
                "use a .mov or .mkv output or another --video-codec"
            )
        self.video = self._add_video_stream()
        self.side = SideStreams(self.container, self.family, side_streams, offset)
        self.pts: list[int] = []
        self._tb = info.video.time_base
        self._offset_ticks = round(offset / self._tb)
        self._closed = False

    # -- set-up ------------------------------------------------------------------------------------
    def _add_video_stream(self) -> av.VideoStream:
        v = self.info.video
        s = self.settings
        rate = v.frame_rate if v.frame_rate else None
        try:
            stream = self.container.add_stream(s.codec, rate=rate, options=dict(s.options))
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"cannot use encoder {s.codec}: {exc}") from exc
        stream.width, stream.height = v.width, v.height
        stream.pix_fmt = s.pix_fmt
        stream.time_base = v.time_base
        stream.codec_context.time_base = v.time_base
        if s.bit_rate:
            stream.codec_context.bit_rate = s.bit_rate
        tag_video_stream(stream, v)
        return stream

    def copy_container_metadata(self, source: av.container.InputContainer) -> None:
        for key, value in source.metadata.items():
            if key.lower() not in ("encoder", "major_brand", "minor_version", "compatible_brands"):
                self.container.metadata[key] = value

    # -- writing -----------------------------------------------------------------------------------
    def write(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode ``frame`` at source timestamp ``pts`` (source time_base); converts format if needed."""
        if frame.format.name != self.settings.pix_fmt:
            frame = to_encoder_format(frame, self.colour, self.settings.pix_fmt)
        else:
            frame = _detach(frame)
        tag_frame(frame, self.colour)
        frame.pts = pts - self._offset_ticks
        frame.time_base = self._tb
        try:
            packets = self.video.encode(frame)
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.path.name}: the {self.settings.codec} encoder failed ({exc})") from exc
        self.pts.append(frame.pts)
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
            finally:
                self.container.close()
        return WriteResult(len(self.pts), self.pts, self._tb, self.plans, self.settings)

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(av.error.FFmpegError):
                self.container.close()


class SideStreams:
    """The input's audio, subtitle and data streams in an output container: copied, re-encoded or left out.

    Packets are shifted by ``offset`` (the range start) and copied bit for bit; only a codec the
    output container cannot hold is re-encoded (audio) or left out (subtitles, data), with a reason.
    """

    def __init__(
        self, container: av.container.OutputContainer, family: str, streams: list[av.stream.Stream], offset: Fraction
    ) -> None:
        self.container = container
        self.family = family
        self.offset = offset
        self._copy_map: dict[int, av.stream.Stream] = {}
        self._transcoders: dict[int, _AudioTranscoder] = {}
        self.plans = [self._add(stream) for stream in streams]

    def _add(self, stream: av.stream.Stream) -> StreamPlan:
        codec = stream.codec_context.name if stream.codec_context is not None else None
        plan = StreamPlan(stream.index, stream.type, codec, "copy")
        if stream.type == "data":
            if codec is None and stream.metadata.get("handler_name", "").lower().startswith("timecode"):
                plan.action, plan.reason = "timecode", "timecode track rewritten from the source timecode"
                return plan
            if self.family in ("mp4", "mov", "matroska", "webm"):
                plan.action, plan.reason = "drop", f"a data stream cannot be copied into {self.family}"
                log.warning("stream #%d (data): left out, %s", stream.index, plan.reason)
                return plan
        if stream.type == "audio" and self.family in _CONTAINER_AUDIO and codec not in _CONTAINER_AUDIO[self.family]:
            target = _AUDIO_FALLBACK[self.family]
            out = self.container.add_stream(target, rate=stream.codec_context.sample_rate)
            out.layout = stream.codec_context.layout
            copy_metadata(stream, out)
            self._transcoders[stream.index] = _AudioTranscoder(stream, out)
            plan.action = "encode"
            plan.reason = f"{codec} cannot go in {self.family}; re-encoded to {target}"
            plan.output_index = out.index
            log.warning("audio stream #%d: %s", stream.index, plan.reason)
            return plan
        if stream.type == "subtitle":
            allowed = _CONTAINER_SUBTITLES.get(self.family)
            if allowed is not None and codec not in allowed:
                plan.action, plan.reason = "drop", f"{codec} subtitles cannot go in {self.family}"
                log.warning("subtitle stream #%d: left out, %s", stream.index, plan.reason)
                return plan
        try:
            out = copy_stream(self.container, stream)
        except (av.error.FFmpegError, ValueError) as exc:
            plan.action, plan.reason = "drop", f"cannot be copied ({exc})"
            log.warning("stream #%d (%s): left out, %s", stream.index, stream.type, plan.reason)
            return plan
        copy_metadata(stream, out)
        self._copy_map[stream.index] = out
        plan.output_index = out.index
        return plan

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
            packet.stream = out
            self.container.mux(packet)

    @property
    def has_streams(self) -> bool:
        return bool(self._copy_map or self._transcoders)

    def flush(self) -> None:
        for transcoder in self._transcoders.values():
            transcoder.flush(self.container)


def copy_metadata(src: av.stream.Stream, dst: av.stream.Stream) -> None:
    """A copied stream keeps its language, title, handler and dispositions (default, forced, ...)."""
    for key, value in src.metadata.items():
        if key.lower() not in ("duration", "encoder", "_statistics_tags", "number_of_frames"):
            dst.metadata[key] = value
    with contextlib.suppress(AttributeError, ValueError):
        dst.disposition = src.disposition


def tag_video_stream(stream: av.VideoStream, video: VideoInfo) -> None:
    """The source's colour tags, pixel aspect, display rotation and timecode on an output video stream."""
    cc = stream.codec_context
    if cc is not None:
        colour = video.colour
        with contextlib.suppress(AttributeError, ValueError):
            cc.colorspace = colour.matrix_id
            cc.color_range = colour.range_id if colour.range_id else (2 if colour.range == "pc" else 1)
            cc.color_primaries = colour.primaries_id
            cc.color_trc = colour.transfer_id
            if video.sample_aspect_ratio:
                cc.sample_aspect_ratio = video.sample_aspect_ratio
    if video.rotation:
        stream.set_display_rotation(video.rotation)
    if video.timecode:
        stream.metadata["timecode"] = video.timecode


def copy_stream(container: av.container.OutputContainer, template: av.stream.Stream) -> av.stream.Stream:
    """A stream-copy output stream with ``template``'s codec parameters.

    PyAV's public ``add_stream_from_template`` needs an *encoder* for the codec; for codecs this FFmpeg
    can only decode (AV1 via libdav1d, TrueHD, ...) fall back to PyAV's codec-less template copy, which
    is what a stream copy needs anyway (PyAV 14-18 name it ``_add_stream_without_codec_from_template``).
    """
    try:
        return container.add_stream_from_template(template)
    except av.codec.codec.UnknownCodecError:
        without_codec = getattr(container, "_add_stream_without_codec_from_template", None)
        if without_codec is None:
            raise
        return without_codec(template)


def _detach(frame: av.VideoFrame) -> av.VideoFrame:
    """Drop per-frame side data (display matrix, SEI) the encoder must not re-apply."""
    try:
        for kind in list(frame.side_data.keys()):
            del frame.side_data[kind]
    except (AttributeError, KeyError, TypeError, ValueError):
        pass
    return frame


class _AudioTranscoder:
    """Decode one copied-stream's packets and re-encode them for a container that cannot hold the codec."""

    def __init__(self, source: av.stream.Stream, out: av.AudioStream) -> None:
        self.decoder = av.CodecContext.create(source.codec_context.name, "r")
        self.decoder.extradata = source.codec_context.extradata
        self.decoder.sample_rate = source.codec_context.sample_rate
        self.decoder.layout = source.codec_context.layout
        self.decoder.format = source.codec_context.format
        self.out = out
        self.resampler = av.AudioResampler(
            format=out.codec_context.format, layout=out.codec_context.layout, rate=out.codec_context.sample_rate
        )
        self.next_pts: int | None = None

    def push(self, packet: av.Packet, offset: Fraction, container: av.container.OutputContainer) -> None:
        for frame in self.decoder.decode(packet):
            self._encode(frame, offset, container)

    def _encode(self, frame: av.AudioFrame | None, offset: Fraction, container: av.container.OutputContainer) -> None:
        if frame is not None and frame.pts is not None and self.next_pts is None:
            self.next_pts = round((frame.pts * frame.time_base - offset) * self.out.codec_context.sample_rate)
        frames = self.resampler.resample(frame) if frame is not None else self.resampler.resample(None)
        for resampled in frames:
            resampled.pts = self.next_pts or 0
            resampled.time_base = Fraction(1, self.out.codec_context.sample_rate)
            self.next_pts = (self.next_pts or 0) + resampled.samples
            container.mux(self.out.encode(resampled))

    def flush(self, container: av.container.OutputContainer) -> None:
        for frame in self.decoder.decode(None):
            self._encode(frame, Fraction(0), container)
        self._encode(None, Fraction(0), container)
        container.mux(self.out.encode(None))
