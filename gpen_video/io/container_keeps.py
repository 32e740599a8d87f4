"""What a muxer keeps of a stream PyAV writes: the pixel aspect and the field order, asked of FFmpeg before any work.

Matroska's display size comes from the AVStream's aspect, which PyAV 18 never sets (it copies the codec context's
into the codec parameters only; MOV ``pasp``, MXF and the codecs that store it, such as H.264's VUI, read it from
there). Some muxers drop the field order of some codecs (ProRes in MXF is stored progressive). ``container_keeps``
encodes one black frame with the run's own encoder settings, pixel aspect and the output's field order into
an in-memory file and reads it back, once per (muxer, settings, size). A lost aspect is set afterwards by one
stream copy through the ffmpeg CLI with ``-aspect`` (``remux_with_aspect``), the only way left; a lost field
order cannot be, nor an aspect another muxer drops (MXF stores DNxHD at a fixed 16:9 display aspect): the run
refuses those before any work.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.errors import OutputError
from gpen_video.io.encoding import EncodeSettings
from gpen_video.io.field_analysis import CODEC_FIELD_ORDER, Order
from gpen_video.io.probe import VideoInfo
from gpen_video.io.writer import FieldTagger, picture_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContainerKeeps:
    aspect: bool  # the pixel aspect set on the codec context is read back from the file
    field_order: Order | None  # the order the file's stream tag reads back; None where the probe failed


def container_keeps(format_name: str, settings: EncodeSettings, video: VideoInfo) -> ContainerKeeps:
    """What ``format_name`` keeps of ``video`` (its size, pixel aspect, field order) encoded with ``settings``."""
    options = tuple(sorted(picture_options(settings, video).items()))
    sar = Fraction(video.metadata.sample_aspect_ratio or video.sample_aspect_ratio or 1)
    return _probe(format_name, settings.codec, settings.pix_fmt, options, settings.bit_rate, video.width,
                  video.height, sar, video.metadata.field_order_id)  # fmt: skip


@functools.lru_cache(maxsize=32)
def _probe(format_name: str, codec: str, pix_fmt: str, options: tuple[tuple[str, str], ...], bit_rate: int | None,
           width: int, height: int, sar: Fraction, field_order_id: int) -> ContainerKeeps:  # fmt: skip
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format=format_name) as out:
            stream = out.add_stream(codec, rate=25, options=dict(options))
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            if bit_rate:
                stream.codec_context.bit_rate = bit_rate
            stream.codec_context.sample_aspect_ratio = sar
            frame = av.VideoFrame(width, height, pix_fmt)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.pts, frame.time_base = 0, Fraction(1, 25)
            frame = FieldTagger(CODEC_FIELD_ORDER.get(field_order_id, "unknown")).tag(frame)
            out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        buffer.seek(0)
        with av.open(buffer) as written:
            read = written.streams.video[0]
            got = read.sample_aspect_ratio
            order = CODEC_FIELD_ORDER.get(int(read.codec_context.field_order or 0), "unknown")
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        log.debug("muxer probe %s/%s/%s: %s", format_name, codec, pix_fmt, exc)
        return ContainerKeeps(True, None)  # nothing learnt: the written file is checked all the same
    return ContainerKeeps(Fraction(got or 1) == sar, order)


def display_aspect(sar: Fraction, width: int, height: int) -> Fraction:
    return sar * Fraction(width, height)


def remux_with_aspect(path: Path, sar: Fraction, width: int, height: int, binary: str) -> None:
    """Stream-copy ``path`` onto itself (every stream, tag and chapter) with the video's pixel aspect set."""
    dar = display_aspect(sar, width, height)
    fixed = path.with_name(f"{path.stem}.aspect{path.suffix}")
    cmd = [binary, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(path), "-map", "0",
           "-c", "copy", "-map_metadata", "0", "-map_chapters", "0", "-copy_unknown",
           "-aspect:v:0", f"{dar.numerator}:{dar.denominator}", str(fixed)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise OutputError(f"{path.name}: the pixel aspect could not be set ({binary}: {exc})") from exc
    if done.returncode or not fixed.exists():
        fixed.unlink(missing_ok=True)
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise OutputError(f"{path.name}: the pixel aspect could not be set with ffmpeg ({reason}); nothing was kept")
    os.replace(fixed, path)
    with av.open(str(path)) as written:
        got = written.streams.video[0].sample_aspect_ratio
    # -aspect takes a ratio of terms up to 255 (PAL 4:3 and 16:9 are exact); otherwise within one display pixel
    if not got or abs(Fraction(got) - sar) * width >= 1:
        raise OutputError(f"{path.name}: the pixel aspect is still {got} after setting {sar}; nothing was kept")
