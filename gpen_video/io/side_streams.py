"""The input's other streams in an output container: copied packet for packet, converted, or left out, with a reason.

What the output container can hold is asked of FFmpeg (``io/formats.py`` and a trial header on an in-memory file),
never kept in tables: a stream it cannot hold is re-encoded (audio), converted (text subtitles into MP4/MOV) or
left out (anything else), and ``StreamPlan.reason`` says which. Stream tags and dispositions are kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from fractions import Fraction

import av

from gpen_video.io.encoding import EncodeSettings
from gpen_video.io.formats import container_caps
from gpen_video.io.probe import VideoInfo
from gpen_video.io.stream_converters import AudioTranscoder, SubtitleConverter

log = logging.getLogger(__name__)

# Encoders tried, in order, when an audio codec cannot be copied into the output (after the muxer's default).
_AUDIO_TARGETS = ("aac", "libopus", "flac", "pcm_s16le", "mp2", "ac3")
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
        self._transcoders: dict[int, AudioTranscoder | SubtitleConverter] = {}
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
                self._transcoders[stream.index] = AudioTranscoder(stream, out)
                plan.action, plan.output_index = "encode", out.index
                plan.reason = f"{codec} cannot go in {self.caps.format_name} ({refused}); re-encoded to {target}"
                log.warning("audio stream #%d: %s", stream.index, plan.reason)
                return plan
        if stream.type == "subtitle" and _is_text_subtitle(codec) and self.caps.holds("mov_text"):
            try:
                converter = SubtitleConverter(self.container, stream)
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


def _is_text_subtitle(codec: str | None) -> bool:
    if codec is None:
        return False
    try:
        return bool(av.codec.Codec(codec, "r").text_sub)
    except (ValueError, av.error.FFmpegError):
        return False


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
