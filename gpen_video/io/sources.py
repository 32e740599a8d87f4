"""The two ends of a video run: the frames that come in (with their upright working image) and the writer
they go out through, sized for the output (k× the source with a background upscale)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from gpen_video.align.records import Decoded
from gpen_video.errors import InputError
from gpen_video.io.encoding import EncodeSettings
from gpen_video.io.ffmpeg_backend import FfmpegWriter
from gpen_video.io.probe import MediaInfo
from gpen_video.io.reader import VideoReader
from gpen_video.io.writer import VideoWriter
from gpen_video.side_packets import SidePackets


def output_info(info: MediaInfo, upscale: int) -> MediaInfo:
    """``info`` as the output stream will be: ``upscale``× the width and height; aspect, colour, timing kept."""
    if upscale == 1:
        return info
    video = dataclasses.replace(info.video, width=info.video.width * upscale, height=info.video.height * upscale)
    return dataclasses.replace(info, video=video)


def open_writer(
    temp: Path,
    info: MediaInfo,
    settings: EncodeSettings,
    reader: VideoReader,
    binary: str | None,
    video_only: bool = False,
) -> VideoWriter | FfmpegWriter:
    """The PyAV writer, or the ffmpeg CLI one (``binary``); a segment's file (``video_only``) holds video alone."""
    side = [] if video_only else reader.side_streams
    offset = Fraction(0) if video_only else (reader.offset or Fraction(0))
    if binary:
        return FfmpegWriter(temp, info, settings, binary, side, offset)
    return VideoWriter(temp, info, settings, side, offset=offset)


def decoded_frames(reader: VideoReader, side: SidePackets, path: Path, info: MediaInfo) -> Iterator[Decoded]:
    """The reader's frames with their upright working image (converted here, in the decode thread: at 4K the
    conversion alone is ~40 ms a frame); the packets demuxed before each frame go to ``side`` first."""
    decoded = False
    colour, rotation = info.video.colour, info.video.rotation
    for frame in reader:
        decoded = True
        side.put(reader.take_packets())
        yield Decoded(frame, frame.upright(colour, rotation))
    if not decoded:
        raise InputError(f"{path}: no video frame could be decoded in the requested range")
    side.put(reader.take_packets())  # packets after the last frame
