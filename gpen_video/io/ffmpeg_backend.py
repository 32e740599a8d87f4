"""``--encoder-backend ffmpeg``: encode with the user's own ffmpeg binary, for encoders PyAV lacks.

Frames go to ffmpeg as rawvideo inside NUT through a pipe, so every frame keeps its exact source
timestamp (a raw pipe would force a constant rate); ffmpeg encodes them into a video-only NUT file.
Meanwhile the other streams' packets (already cut to the range by the reader, exactly as for the
PyAV backend: ffmpeg's own ``-ss`` would keep audio back to the previous key frame when copying) go
through ``SideStreams`` into a sidecar NUT file. At the end ffmpeg joins the two with ``-c copy``,
taking global metadata and chapters from the input. An interlaced source's field order reaches the frames'
flags through ``setparams=field_mode`` (the encoders follow them; MPEG-2, H.264, ProRes and DNxHD code fields:
``-flags +ilme+ildct``), the codec's tag through ``-field_order`` on the encode and again on the join (NUT does
not store it); the pixel aspect through ``setsar`` (NUT stores it, the join copies it). After the join the
pixel aspect is read back: where the muxer left it out, the sink sets it (``WriteResult.aspect_missing``), as
for the PyAV writer; the field order is read back by the sink. The commands are built with ffmpeg-python. The
binary is ``output.ffmpeg_binary``, else ``ffmpeg`` on PATH, else the one inside
the ``imageio-ffmpeg`` wheel.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import subprocess
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from gpen_video.errors import DependencyError, OutputError
from gpen_video.io.colour import tag_frame, to_encoder_format
from gpen_video.io.encoding import EncodeSettings, frame_rate
from gpen_video.io.field_analysis import CODEC_FIELD_ORDER
from gpen_video.io.probe import MediaInfo, VideoInfo
from gpen_video.io.side_streams import SideStreams, StreamPlan
from gpen_video.io.writer import FRAME_RATE_ENCODERS, WriteResult, picture_options
from gpen_video.memory import ZEROED_HEAP_ENV

# AVFieldOrder as the ffmpeg CLI's ``-field_order`` names it (an untagged stream is left as the encoder tags it)
_CLI_FIELD_ORDER = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}

log = logging.getLogger(__name__)


def find_ffmpeg(configured: str | None = None) -> str:
    """The ffmpeg binary to use, or DependencyError saying how to get one."""
    if configured:
        found = shutil.which(configured)
        if not found:
            raise DependencyError(f"ffmpeg binary not found: {configured}")
        return found
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise DependencyError(
            "--encoder-backend ffmpeg needs an ffmpeg binary: install ffmpeg, or pip install 'gpen-video[ffmpeg]'"
        ) from exc


@functools.lru_cache(maxsize=8)
def demux_time_base(binary: str) -> str:
    """How this ffmpeg spells "the demuxer's time base" for ``-enc_time_base``: ``demux`` (6.1+) or ``-1`` (5.1)."""
    for value in ("demux", "-1"):
        cmd = [binary, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "color=s=16x16:d=0.04",
               "-frames:v", "1", "-c:v", "rawvideo", "-fps_mode", "passthrough", "-enc_time_base", value, "-f", "null",
               "-"]  # fmt: skip
        try:
            if subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode == 0:
                return value
        except (OSError, subprocess.TimeoutExpired):
            break
    raise DependencyError(f"{binary}: cannot run a one-frame test encode; is it an ffmpeg 5.1 or later binary?")


class FfmpegEncoders:
    """The encoders of an ffmpeg binary and their pixel formats (asked once, then cached)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.name = f"ffmpeg ({binary})"

    @functools.cached_property
    def _encoders(self) -> set[str]:
        out = subprocess.run([self.binary, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False)
        return {m.group(1) for m in re.finditer(r"^\s*V\S*\s+(\S+)", out.stdout, re.MULTILINE)}

    def has(self, codec: str) -> bool:
        return codec in self._encoders

    @functools.lru_cache(maxsize=32)  # noqa: B019 - a handful of codecs per process
    def formats(self, codec: str) -> list[str]:
        if not self.has(codec):
            return []
        out = subprocess.run(
            [self.binary, "-hide_banner", "-h", f"encoder={codec}"], capture_output=True, text=True, check=False
        )
        match = re.search(r"Supported pixel formats:(.*)", out.stdout)
        return match.group(1).split() if match else []


class FfmpegWriter:
    """The ``io.writer.Writer`` protocol over a pipe to the user's ffmpeg binary (``VideoWriter``'s twin)."""

    def __init__(
        self,
        path: Path,
        info: MediaInfo,
        settings: EncodeSettings,
        binary: str,
        side_streams: list[av.stream.Stream],
        offset: Fraction,
    ) -> None:
        import ffmpeg  # ffmpeg-python: only needed for this backend

        self.ffmpeg = ffmpeg
        self.path = path
        self.info = info
        self.settings = settings
        self.binary = binary
        self.offset = offset
        self.colour = info.video.colour
        self._tb = info.video.time_base
        self._offset_ticks = round(offset / self._tb)
        self.pts: list[int] = []
        self.video_part = path.with_name(f"{path.stem}.video.nut")
        self.side_part = path.with_name(f"{path.stem}.side.nut")
        self.sidecar = av.open(str(self.side_part), "w", format="nut")
        self.side = SideStreams(self.sidecar, family_for_path(path), side_streams, offset)
        # the encoder's process hands out zeroed heap blocks throughout, for x264's sake (gpen_video/memory.py)
        self.proc = subprocess.Popen(self._encoder().compile(cmd=binary), stdin=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env={**os.environ, **ZEROED_HEAP_ENV})  # fmt: skip
        self._stderr: deque[str] = deque(maxlen=20)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        self.nut = av.open(self.proc.stdin, "w", format="nut")
        stream = self.nut.add_stream("rawvideo", rate=info.video.frame_rate or 25)
        stream.width, stream.height, stream.pix_fmt = info.video.width, info.video.height, settings.pix_fmt
        stream.time_base = self._tb
        stream.codec_context.time_base = self._tb
        self.stream = stream
        self._closed = False

    @property
    def plans(self) -> list[StreamPlan]:
        return self.side.plans

    def _encoder(self) -> Any:
        """ffmpeg reading rawvideo NUT on stdin, writing the encoded video (only) to ``video_part``."""
        c = self.colour
        options: dict[str, Any] = {"vcodec": self.settings.codec, "pix_fmt": self.settings.pix_fmt}
        options.update(cli_picture_options(self.settings, self.info.video))
        if self.settings.bit_rate:
            options["video_bitrate"] = self.settings.bit_rate
        # NUT carries no colour description, so tag the frames themselves (ffmpeg's encoders read them)
        tags = {"color_primaries": c.primaries, "color_trc": c.transfer}
        if not c.matrix_guessed:
            tags["colorspace"] = c.matrix
        if c.range_id:
            tags["range"] = c.range
        stream = self.ffmpeg.input("pipe:", format="nut").video
        params = {k: v for k, v in tags.items() if v not in ("unknown", "rgb")}
        order = CODEC_FIELD_ORDER.get(self.info.video.metadata.field_order_id, "unknown")
        if order in ("tff", "bff"):  # each frame's interlaced and top-field-first flags, which the encoder follows
            params["field_mode"] = order
        if params:
            stream = stream.filter("setparams", **params)
        sar = source_sar(self.info.video)
        if sar != 1:
            stream = stream.filter("setsar", f"{sar.numerator}/{sar.denominator}")
        time_base = self._encoder_time_base()
        out = stream.output(str(self.video_part), format="nut", fps_mode="passthrough", enc_time_base=time_base,
                            **options)  # fmt: skip
        return out.global_args("-hide_banner", "-nostdin", "-loglevel", "error").overwrite_output()

    def _encoder_time_base(self) -> str:
        """The source's own time base (every timestamp kept exactly); one frame for the encoders that count time
        in frames (MPEG-1/2, DV: on another, such as NUT's 1/51200, ffmpeg stops with "Invalid argument")."""
        video = self.info.video
        rate = frame_rate(video)
        if self.settings.codec in FRAME_RATE_ENCODERS and rate and not video.is_vfr:
            return f"{rate.denominator}/{rate.numerator}"
        return demux_time_base(self.binary)

    def _joiner(self) -> list[str]:
        """ffmpeg copying the encoded video, the sidecar streams, and the input's metadata into ``path``."""
        cmd = [self.binary, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        if self.info.video.rotation:  # a display tag on the stored pixels, as the source had
            cmd += ["-display_rotation", str(self.info.video.rotation)]
        cmd += ["-i", str(self.video_part)]
        maps = ["-map", "0:v:0"]
        if self.side.has_streams:
            cmd += ["-i", str(self.side_part)]
            maps += ["-map", "1"]
        source = "2" if self.side.has_streams else "1"
        cmd += ["-i", str(self.info.path), *maps, "-map_metadata", source, "-map_chapters", source, "-c", "copy"]
        if self.info.video.timecode:
            cmd += ["-timecode", self.info.video.timecode]
        field_order = _CLI_FIELD_ORDER.get(self.info.video.metadata.field_order_id)
        if field_order:  # NUT keeps no field order tag: a stream copy takes it as a codec option
            cmd += ["-field_order:v:0", field_order]
        return [*cmd, str(self.path)]

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in iter(self.proc.stderr.readline, b""):
            self._stderr.append(line.decode(errors="replace").rstrip())

    def copy_container_metadata(self, source: av.container.InputContainer) -> None:
        """ffmpeg copies it from the input when joining (-map_metadata)."""

    def write(self, frame: av.VideoFrame, pts: int) -> None:
        if frame.format.name != self.settings.pix_fmt:
            frame = to_encoder_format(frame, self.colour, self.settings.pix_fmt)
        tag_frame(frame, self.colour)
        frame.pts = pts - self._offset_ticks
        frame.time_base = self._tb
        try:
            self.nut.mux(self.stream.encode(frame))
        except (BrokenPipeError, av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"ffmpeg stopped: {self._last_error() or exc}") from exc
        self.pts.append(frame.pts)

    def write_packets(self, packets: list[av.Packet]) -> None:
        self.side.write(packets)

    def _last_error(self) -> str:
        return self._stderr[-1] if self._stderr else ""

    def close(self) -> WriteResult:
        if self._closed:
            raise RuntimeError("FfmpegWriter closed twice")
        self._closed = True
        try:
            with contextlib.suppress(BrokenPipeError, OSError, av.error.FFmpegError):
                self.nut.mux(self.stream.encode(None))
                self.nut.close()
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            code = self.proc.wait()
            self._drain.join(timeout=5)
            self.side.flush()
            self.sidecar.close()
            if code != 0:
                raise OutputError(f"ffmpeg failed (exit {code}): {self._last_error() or 'no message'}")
            joined = subprocess.run(self._joiner(), capture_output=True, text=True, check=False)
            if joined.returncode != 0:
                last = (joined.stderr.strip().splitlines() or ["no message"])[-1]
                raise OutputError(f"ffmpeg could not mux the output (exit {joined.returncode}): {last}")
            return WriteResult(len(self.pts), self.pts, self._tb, self.plans, self.settings,
                               aspect_missing=self._aspect_missing())  # fmt: skip
        finally:
            self._remove_parts()

    def _aspect_missing(self) -> Fraction | None:
        """The source's pixel aspect where the joined file does not carry it (the sink sets it), else None."""
        sar = source_sar(self.info.video)
        if sar == 1:
            return None
        try:
            with av.open(str(self.path)) as written:
                got = written.streams.video[0].sample_aspect_ratio
        except (av.error.FFmpegError, IndexError):
            return None
        return None if got and Fraction(got) == sar else sar

    def _remove_parts(self) -> None:
        self.video_part.unlink(missing_ok=True)
        self.side_part.unlink(missing_ok=True)

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self.proc.kill()
            self.proc.wait()
            with contextlib.suppress(av.error.FFmpegError):
                self.sidecar.close()
            self._remove_parts()


def source_sar(video: VideoInfo) -> Fraction:
    """The pixel aspect the output must carry (1 where the source says none)."""
    return Fraction(video.metadata.sample_aspect_ratio or video.sample_aspect_ratio or 1)


def cli_picture_options(settings: EncodeSettings, video: VideoInfo) -> dict[str, str]:
    """``writer.picture_options`` as ffmpeg CLI options: the field order, interlaced coding where the codec codes
    fields, the chroma siting. Its ``top`` goes: the ``setparams`` frame flags say the first field."""
    options = picture_options(settings, video)
    options.pop("top", None)
    if "field_order" in options:
        order = _CLI_FIELD_ORDER.get(int(options["field_order"]))
        if order is None:
            del options["field_order"]
        else:
            options["field_order"] = order
    return options


def family_for_path(path: Path) -> str:
    """The container family an output path's extension selects (for what its streams can hold)."""
    ext = path.suffix.lower().lstrip(".")
    return {"m4v": "mp4", "mp4": "mp4", "mov": "mov", "mkv": "matroska", "mka": "matroska", "webm": "webm"}.get(
        ext, ext
    )
