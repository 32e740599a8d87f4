"""Side streams an output container cannot hold as they are, converted packet by packet as the writer muxes them.

Audio is decoded and encoded again (PyAV's encoder resamples and re-frames); text subtitles become ``mov_text``
for MP4/MOV, as the ffmpeg CLI converts them. Both keep the source's timing, shifted by the range offset.
"""

from __future__ import annotations

import contextlib
import logging
from fractions import Fraction

import av

log = logging.getLogger(__name__)


class SubtitleConverter:
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


class AudioTranscoder:
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
