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
from gpen_video.io.probe import VideoInfo, ffmpeg_reason
from gpen_video.io.stream_converters import AudioTranscoder, SubtitleConverter

log = logging.getLogger(__name__)

# Encoders tried, in order, when an audio codec cannot be copied into the output (after the muxer's default).
_AUDIO_TARGETS = ("aac", "libopus", "flac", "pcm_s16le", "mp2", "ac3")
# Stream types whose payload is carried in the header (no packets)
_HEADER_ONLY = ("attachment",)
# Containers text subtitles are converted to mov_text for (as the ffmpeg CLI does): MP4 and MOV only
_MOV_TEXT_FAMILIES = ("mov", "mp4")


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
        self._tried: set[int] = set()  # copied streams whose first packet the muxer took on a trial file
        self._refused: set[int] = set()  # streams whose packets the muxer refused: left out from there on
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
        if self.caps.family == "mp4" and _is_pcm(codec) and (refused is None or self._alac_format(codec)):
            return self._pcm_into_mp4(stream, plan)
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
                reason = f"{codec} cannot go in {self.caps.format_name} ({refused}); re-encoded to {target}"
                return self._encode_audio(stream, plan, target, reason)
        if stream.type == "subtitle" and _is_text_subtitle(codec) and self.caps.family in _MOV_TEXT_FAMILIES:
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

    def _encode_audio(self, stream: av.stream.Stream, plan: StreamPlan, target: str, reason: str,
                      sample_format: str | None = None) -> StreamPlan:  # fmt: skip
        """``stream`` re-encoded to ``target`` (in ``sample_format`` where given), said in one warning."""
        out = self.container.add_stream(target, rate=stream.codec_context.sample_rate)
        with contextlib.suppress(AttributeError, ValueError):
            out.layout = _ordered_layout(stream.codec_context.layout)
        if sample_format:
            out.format = sample_format
        copy_metadata(stream, out)
        self._transcoders[stream.index] = AudioTranscoder(stream, out)
        plan.action, plan.output_index, plan.reason = "encode", out.index, reason
        log.warning("audio stream #%d: %s", stream.index, plan.reason)
        return plan

    def _pcm_into_mp4(self, stream: av.stream.Stream, plan: StreamPlan) -> StreamPlan:
        """PCM into MP4: ALAC where that is lossless (8, 16 and 24 bits), else copied as MP4's ``ipcm``; said
        either way. MP4's PCM (ipcm/fpcm) is read by few players: QuickTime and Resolve read PCM from MOV (lpcm,
        sowt, twos), and FFmpeg before 6 reads 24-bit ipcm as 16-bit."""
        codec = stream.codec_context.name
        sample_format = self._alac_format(codec)
        if sample_format is not None:
            reason = (f"{codec} in MP4 (ipcm) is read by few players; converted to ALAC, lossless (decodes to the "
                      "same samples); write .mov to keep PCM as it is")  # fmt: skip
            return self._encode_audio(stream, plan, "alac", reason, sample_format)
        out = copy_stream(self.container, stream)
        copy_metadata(stream, out)
        self._copy_map[stream.index] = out
        plan.output_index = out.index
        plan.reason = (f"{codec} copied as MP4 PCM (ipcm/fpcm), which few players read (no lossless codec MP4 "
                       "players read holds it); write .mov to keep it where QuickTime and Resolve read it")  # fmt: skip
        log.warning("audio stream #%d: %s", stream.index, plan.reason)
        return plan

    def _alac_format(self, codec: str | None) -> str | None:
        """The sample format ALAC holds ``codec``'s samples in, exactly; None where it cannot, or MP4 has no ALAC."""
        sample_format = _ALAC_LOSSLESS.get(codec or "")
        return sample_format if sample_format is not None and self.caps.holds("alac") else None

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
        """Copy (or re-encode) packets, shifted by the range offset. A stream whose packets the muxer refuses (its
        first, tried on an in-memory file, or any later one) is left out from there on, said in one line."""
        for packet in packets:
            index = packet.stream.index
            if index in self._refused:
                continue
            try:
                self._write_one(packet)
            except (av.error.FFmpegError, ValueError) as exc:
                self._leave_out(index, f"the {self.caps.format_name} muxer refused a packet ({muxer_reason(exc)})")

    def _write_one(self, packet: av.Packet) -> None:
        index = packet.stream.index
        if index in self._transcoders:
            self._transcoders[index].push(packet, self.offset, self.container)
            return
        out = self._copy_map.get(index)
        if out is None or packet.size == 0:
            return
        if index not in self._tried:
            self._tried.add(index)
            refused = packet_refusal(self.caps.format_name, packet)
            if refused is not None:
                self._leave_out(index, refused)
                return
        shift = round(self.offset / packet.time_base) if self.offset else 0
        if packet.pts is not None:
            packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is not None and ts < 0 and not self.caps.reorders:
            # AVI-like muxers would shift the whole file to start the audio's priming at 0
            self._note_skipped_priming(index)
            return
        if out.index not in self.starts and ts is not None:
            self.starts[out.index] = ts * packet.time_base
        packet.stream = out
        self.container.mux(packet)

    def _leave_out(self, index: int, reason: str) -> None:
        """Stream ``index``'s packets are left out from here on: its plan says why, and so does one warning."""
        self._refused.add(index)
        for plan in self.plans:
            if plan.input_index == index:
                plan.action = "drop"
                plan.reason = f"{reason}; left out" + (" (its track in the output is empty)" if self.starts else "")
                log.warning("stream #%d (%s): %s", index, plan.type, plan.reason)

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


def packet_refusal(format_name: str, packet: av.Packet) -> str | None:
    """Why the ``format_name`` muxer refuses ``packet``'s stream copied packet for packet (its first packet tried
    alone on an in-memory file: AVI takes no length-prefixed H.264, say), or None. A trial that fails without
    the packet too (a muxer that wants other streams) says nothing either way: None."""
    refused = _packet_trial(format_name, packet, with_packet=True)
    if refused is not None and _packet_trial(format_name, packet, with_packet=False) is None:
        return f"the {format_name} muxer refuses its packets ({refused})"
    return None


def _packet_trial(format_name: str, packet: av.Packet, with_packet: bool) -> str | None:
    trial = av.open(io.BytesIO(), "w", format=format_name)
    try:
        copied = copy_stream(trial, packet.stream)
        trial.start_encoding()
        if with_packet:
            probe = av.Packet(bytes(packet))
            probe.pts = 0 if packet.pts is not None else None
            probe.dts = 0 if packet.dts is not None else None
            probe.time_base = packet.time_base
            probe.is_keyframe = packet.is_keyframe
            probe.stream = copied
            trial.mux(probe)
        trial.close()
    except (av.error.FFmpegError, ValueError, TypeError) as exc:
        with contextlib.suppress(av.error.FFmpegError, ValueError):
            trial.close()
        return muxer_reason(exc)
    return None


def muxer_reason(exc: Exception) -> str:
    """FFmpeg's own words for a refusal: its last log line where PyAV kept one, else the error's text."""
    text = str(exc)
    if "last error log:" in text:
        return text.split("last error log:", 1)[1].strip().replace("\n", " ").strip()
    return ffmpeg_reason(exc)


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


def _is_pcm(codec: str | None) -> bool:
    return bool(codec and codec.startswith("pcm_"))


# PCM codecs ALAC holds sample for sample, and the planar format its encoder takes them in (24 bits: s32p)
_ALAC_LOSSLESS = {"pcm_u8": "s16p", "pcm_s8": "s16p", "pcm_s16le": "s16p", "pcm_s16be": "s16p",
                  "pcm_s24le": "s32p", "pcm_s24be": "s32p"}  # fmt: skip


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
