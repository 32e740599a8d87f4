"""Opening a file already probed: lightly (no duration estimate, no frame-rate analysis), checked against the probe.

Every segment, field check and assembly of a job opens its input again; the probe already knows what FFmpeg's open
would read the file for, so these opens skip it, and open again with the full analysis where the streams say
otherwise. A TS or PS can also be opened at a key frame's byte position (``open_at_byte``), skipping the file's
start altogether.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.codec.hwaccel import HWAccel

from gpen_video.errors import InputError
from gpen_video.io.probe import MediaInfo, nominal_rate, open_input

log = logging.getLogger(__name__)

# A file whose media info is known (probed once per job) need not have a TS or PS file's duration estimated
# again on every open: FFmpeg reads the last 250 kB of the file for it (estimate_timings_from_pts), ten times
# over for ten segments. Only mpeg and mpegts estimate it so; ``truncation`` needs it there (a TS cut before
# its last packets ends before its pts-estimated duration), so a whole-file decode still opens with it.
PROBED_INPUT_OPTIONS = {"skip_estimate_duration_from_pts": "1"}


# FFmpeg's stream analysis (avformat_find_stream_info) reads on, after every stream's parameters are known, to
# 20 frames of video (``fpsprobesize``) to estimate the frame rate: half of a TS open's reads (0.39 MB at 4 Mbit/s,
# on every segment's open). A probed file's rate is known, so an open given its media info skips that estimate,
# then checks that the streams say what the probe found (``analysis_differs``) and opens again with the full
# analysis where anything differs.
LIGHT_ANALYSIS_OPTIONS = {"fpsprobesize": "0"}


# Bytes before the key frame's packet that an open of a ``containers.BYTE_START_FORMATS`` file starts at (TS and PS
# alike; in a TS the partial packets there are dropped): a PS's MPEG video parser that starts on the key frame's own
# start code gives its picture the next packet's timestamp; started in the packet before, it is in step.
BYTE_START_LEAD = 8192


def open_probed(path: str | Path, info: MediaInfo | None = None, **kwargs: Any) -> av.container.InputContainer:
    """``open_input`` for a file already probed (its duration is in the media info; with ``info``, its streams)."""
    options = {**PROBED_INPUT_OPTIONS, **kwargs.pop("container_options", {})}
    if info is None:
        return open_input(path, container_options=options, **kwargs)
    container = open_input(path, container_options={**options, **LIGHT_ANALYSIS_OPTIONS}, **kwargs)
    differs = analysis_differs(container, info)
    if differs is None:
        return container
    log.debug("%s: %s after the light stream analysis; opening it again with the full one", path, differs)
    container.close()
    return open_input(path, container_options=options, **kwargs)


def open_at_byte(
    path: Path, info: MediaInfo, position: int, hwaccel: HWAccel | None = None
) -> av.container.InputContainer | None:
    """``path`` opened BYTE_START_LEAD before ``position`` (the format named: probing it would read the file's start),
    or None where nothing can be opened there or its streams there are not the probe's: a PS numbers its streams in
    the order it meets them, a TS the streams of a program whose table comes later, so an open in mid-file can give
    another stream another's index."""
    options = {**PROBED_INPUT_OPTIONS, **LIGHT_ANALYSIS_OPTIONS,
               "skip_initial_bytes": str(max(position - BYTE_START_LEAD, 0))}  # fmt: skip
    try:
        container = open_input(path, format=info.format_name, container_options=options, hwaccel=hwaccel)
    except InputError as exc:
        log.debug("%s: cannot open it at byte %d (%s)", path, position, exc)
        return None
    differs = analysis_differs(container, info)
    if differs is None:
        return container
    log.debug("%s: opened at byte %d, %s", path, position, differs)
    container.close()
    return None


def analysis_differs(container: av.container.InputContainer, info: MediaInfo) -> str | None:
    """What the opened streams say unlike the probe (the parameters a run uses, and each index's stream id), or
    None where nothing differs."""
    others = {s.index: s for s in info.streams}
    if len(container.streams) != len(others) + 1:
        return f"{len(container.streams)} streams where the probe found {len(others) + 1}"
    for stream in container.streams:
        cc = stream.codec_context
        probed = others.get(stream.index)
        want_id = info.video.stream_id if stream.index == info.video.index else probed and probed.stream_id
        if want_id is not None and stream.id != want_id:
            return f"stream {stream.index} has id {stream.id:#x} where the probe found {want_id:#x}"
        if stream.index == info.video.index:
            if stream.type != "video":
                return f"stream {stream.index} is {stream.type} where the probe found the video"
            video = info.video
            rate = nominal_rate(stream)
            # without the estimate, the rate of a codec that counts fields (MPEG-2, H.264) is guessed as the field rate
            if rate and video.frame_rate and rate == 2 * Fraction(video.frame_rate).limit_denominator(10**6):
                rate = video.frame_rate
            seen = (stream.type, cc.name, cc.width, cc.height, Fraction(stream.time_base), rate)
            want = ("video", video.codec, video.width, video.height, Fraction(video.time_base), video.frame_rate)
            if seen != want or cc.pix_fmt is None:
                return f"video {seen} (pixel format {cc.pix_fmt}) where the probe found {want}"
            continue
        other = others.get(stream.index)
        if other is None or stream.type != other.type or (cc.name if cc is not None else None) != other.codec:
            return f"stream {stream.index} is {stream.type} {cc.name if cc is not None else None}"
        if stream.type == "audio":
            seen_audio = (cc.sample_rate, cc.channels, cc.layout.name if cc.layout else None, cc.format is not None)
            want_audio = (other.sample_rate, other.channels, other.layout, True)
            if seen_audio != want_audio:
                return f"audio stream {stream.index}: {seen_audio} where the probe found {want_audio}"
    return None
