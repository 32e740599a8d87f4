"""The one place that knows the whole flow: read → faces → align → restore → compose → write.

A frame with no face goes to the encoder as the decoded source samples (one encode, no colour
round trip). A frame with faces is converted to the working BGR image, its faces are aligned,
restored and pasted back, and the result is converted to the encoder's format with the stream's own
matrix; samples outside the paste mask are then copied back from the source so they stay exact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from gpen_video.config import Config
from gpen_video.errors import InputError
from gpen_video.io.colour import ColourInfo, from_working
from gpen_video.io.encoding import PYAV_ENCODERS, EncodeSettings, choose_encoding
from gpen_video.io.ffmpeg_backend import FfmpegEncoders, FfmpegWriter, find_ffmpeg
from gpen_video.io.output import atomic_output, check_output_path, verify_video
from gpen_video.io.probe import MediaInfo, probe
from gpen_video.io.reader import Frame, VideoReader
from gpen_video.io.writer import VideoWriter
from gpen_video.report import RunReport, StageTimes
from gpen_video.restore.restorer import IdentityRestorer, Restorer

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class SegmentWindow:
    """A piece of a long input, restored on its own for later assembly (batch jobs).

    Decoding starts at ``decode_from`` seconds (a key frame some frames before the segment, so tracks
    and smoothing warm up) and stops at ``decode_until`` (some frames after, for the look-ahead); only
    frames with ``emit_start <= pts < emit_end`` (source time-base ticks) are restored and written.
    The segment file holds video only, at the source timestamps (no shift), so segments concatenate
    exactly; the audio and other streams are muxed once when the segments are assembled.
    """

    decode_from: float
    emit_start: int
    emit_end: int | None
    decode_until: float | None = None

    def emits(self, pts: int) -> bool:
        return pts >= self.emit_start and (self.emit_end is None or pts < self.emit_end)


@dataclass
class RestoreJob:
    """One input restored to one output under one configuration."""

    input: Path
    output: Path
    config: Config
    restorer: Restorer | None = None  # None: load config.restore.model
    progress: ProgressCallback | None = None
    info: MediaInfo | None = None
    segment: SegmentWindow | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def planned_frames(info: MediaInfo, config: Config) -> int:
    """Frames a run over ``info`` with ``config``'s range will process (for progress bars)."""
    total = info.video.frame_count
    if config.start is None and config.duration is None:
        return total
    rate = float(info.video.frame_count / info.video.duration) if info.video.duration else 25.0
    remaining = max(info.video.duration - (config.start or 0.0), 0.0)
    seconds = remaining if config.duration is None else min(config.duration, remaining)
    return max(round(seconds * rate), 0)


def run_restore(job: RestoreJob) -> RunReport:
    """Restore ``job.input`` into ``job.output``; the output appears only if complete and verified."""
    config = job.config
    check_output_path(job.input, job.output, config.output.overwrite)
    info = job.info or probe(job.input)
    if config.start is not None and config.start >= info.video.start_time + info.video.duration:
        raise InputError(f"{job.input}: --start {config.start:.3f}s is past the end ({info.video.duration:.3f}s)")
    binary = find_ffmpeg(config.output.ffmpeg_binary) if config.output.encoder_backend == "ffmpeg" else None
    settings = choose_encoding(info.video, config.output, FfmpegEncoders(binary) if binary else PYAV_ENCODERS)
    restorer = job.restorer or _load_restorer(config)
    report = RunReport.begin(job.input, job.output, info, settings, restorer.name, config)
    times = StageTimes()
    segment = job.segment
    start, duration = config.start, config.duration
    if segment is not None:
        start = segment.decode_from
        duration = None if segment.decode_until is None else segment.decode_until - segment.decode_from
    with VideoReader(job.input, info, config.reader, start, duration) as reader:
        wanted = segment.emits if segment is not None else None
        faces = FacePath(restorer, info.video.colour, info.video.rotation, config, times, wanted)
        frames_iter = iter(reader)
        first = _first_frame(frames_iter, job.input)
        with atomic_output(job.output) as temp:
            writer = _open_writer(temp, info, settings, reader, config, binary, video_only=segment is not None)
            writer.copy_container_metadata(reader.container)
            try:
                for done in _process(first, frames_iter, reader, writer, faces, times, wanted):
                    if job.progress:
                        job.progress(done)
                result = writer.close()
            except BaseException:
                writer.abort()
                raise
            t0 = time.perf_counter()
            verify_video(temp, result.pts, result.time_base)
            times.add("verify", time.perf_counter() - t0)
        report.finish(reader.stats, result, faces.summary(), times)
    return report


def _open_writer(
    temp: Path,
    info: MediaInfo,
    settings: EncodeSettings,
    reader: VideoReader,
    config: Config,
    binary: str | None,
    video_only: bool = False,
) -> VideoWriter | FfmpegWriter:
    side = [] if video_only else reader.side_streams
    offset = Fraction(0) if video_only else (reader.offset or Fraction(0))
    if binary:
        return FfmpegWriter(temp, info, settings, binary, side, offset)
    return VideoWriter(temp, info, settings, side, offset=offset)


def _load_restorer(config: Config) -> Restorer:
    r = config.restore
    if r.model == "identity":  # dry runs need no torch import
        return IdentityRestorer(r.identity_size)
    from gpen_video.models import load_restorer

    return load_restorer(r.model, device=r.device, precision=r.precision, weights_dir=r.weights_dir,
                         identity_size=r.identity_size)  # fmt: skip


def _first_frame(frames: Any, path: Path) -> Frame:
    try:
        return next(frames)
    except StopIteration:
        raise InputError(f"{path}: no video frame could be decoded in the requested range") from None


def _process(
    first: Frame,
    frames: Any,
    reader: VideoReader,
    writer: VideoWriter | FfmpegWriter,
    faces: FacePath,
    times: StageTimes,
    wanted: Callable[[int], bool] | None = None,
) -> Any:
    """Drive frames through the face path into the writer; yields the count of frames written."""
    written = 0

    def emit(ready: list[tuple[Frame, av.VideoFrame]]) -> int:
        t0 = time.perf_counter()
        count = 0
        for frame, out in ready:
            if wanted is None or wanted(frame.pts):
                writer.write(out, frame.pts)
                count += 1
        times.add("encode", time.perf_counter() - t0)
        return count

    def all_frames() -> Any:
        yield first
        yield from frames

    it = all_frames()
    while True:
        t0 = time.perf_counter()
        try:
            frame = next(it)
        except StopIteration:
            break
        times.add("decode", time.perf_counter() - t0)
        writer.write_packets(reader.take_packets())
        written += emit(faces.push(frame))
        yield written
    writer.write_packets(reader.take_packets())
    written += emit(faces.flush())
    yield written


class FacePath:
    """Frames in, frames out (same order): detection+tracking with look-ahead, then restore and paste."""

    def __init__(
        self,
        restorer: Restorer,
        colour: ColourInfo,
        rotation: int,
        config: Config,
        times: StageTimes,
        wanted: Callable[[int], bool] | None = None,
    ) -> None:
        from gpen_video.faces import FaceStage

        self.restorer = restorer
        self.colour = colour
        self.rotation = rotation
        self.config = config
        self.times = times
        self.wanted = wanted  # frames outside a segment only warm the tracker up: not restored
        self.stage = FaceStage(config.faces)
        self.pending: dict[int, tuple[Frame, np.ndarray]] = {}
        self.faces_restored = 0
        self.frames_with_faces = 0
        self.pix_fmt: str | None = None

    def push(self, frame: Frame) -> list[tuple[Frame, av.VideoFrame]]:
        t0 = time.perf_counter()
        image = frame.upright(self.colour, self.rotation)
        self.times.add("convert", time.perf_counter() - t0)
        t0 = time.perf_counter()
        self.pending[frame.index] = (frame, image)
        finished = self.stage.push(frame.index, image, frame.time)  # it takes 16-bit frames as they are
        self.times.add("faces", time.perf_counter() - t0)
        return [self._finish(ff) for ff in finished]

    def flush(self) -> list[tuple[Frame, av.VideoFrame]]:
        t0 = time.perf_counter()
        finished = self.stage.flush()
        self.times.add("faces", time.perf_counter() - t0)
        return [self._finish(ff) for ff in finished]

    def _finish(self, frame_faces: Any) -> tuple[Frame, av.VideoFrame]:
        frame, image = self.pending.pop(frame_faces.index)
        if not frame_faces.faces or (self.wanted is not None and not self.wanted(frame.pts)):
            return frame, frame.source
        from gpen_video.align import align_faces, compose

        self.frames_with_faces += 1
        t0 = time.perf_counter()
        batch = align_faces(image, frame_faces.faces, self.restorer.size, self.config.align.template)
        crops = batch.crops if batch.crops.dtype == np.uint8 else (batch.crops >> 8).astype(np.uint8)
        self.times.add("align", time.perf_counter() - t0)
        t0 = time.perf_counter()
        restored = self.restorer.restore(crops)
        self.faces_restored += len(restored)
        self.times.add("restore", time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = compose(image, restored, batch, self.config.compose)
        out = from_working(result.image, self.colour, frame.source.format.name, self.rotation)
        keep_untouched_samples(out, frame.source, result.mask, self.rotation)
        self.times.add("compose", time.perf_counter() - t0)
        return frame, out

    def summary(self) -> dict[str, Any]:
        report = self.stage.report()
        report["frames_with_faces"] = self.frames_with_faces
        report["faces_restored"] = self.faces_restored
        return report


def keep_untouched_samples(out: av.VideoFrame, source: av.VideoFrame, mask: np.ndarray, rotation: int) -> None:
    """Copy the source's samples into ``out`` wherever the upright ``mask`` is zero, plane by plane.

    Chroma planes are subsampled: a chroma sample is kept only if every luma pixel it covers is
    untouched, so the face edge never mixes old and new chroma. Packed formats are left as converted.
    """
    from gpen_video.io.rotation import unrotate_image

    if not out.format.is_planar or out.format.name != source.format.name:
        return
    touched = unrotate_image(mask > 0, rotation)
    height, width = touched.shape
    dtype = np.uint16 if max(c.bits for c in out.format.components) > 8 else np.uint8
    for plane_out, plane_src in zip(out.planes, source.planes, strict=True):
        w, h = plane_src.width, plane_src.height
        sx, sy = -(-width // w), -(-height // h)  # subsampling factors (ceil: odd sizes round up)
        if (sx, sy) != (1, 1):
            padded = np.pad(touched, ((0, h * sy - height), (0, w * sx - width)), mode="edge")
            block = padded.reshape(h, sy, w, sx).any(axis=(1, 3))
        else:
            block = touched
        src = np.frombuffer(plane_src, dtype=dtype).reshape(h, -1)[:, :w]
        dst = np.frombuffer(plane_out, dtype=dtype).reshape(plane_out.height, -1)[:, :w]
        keep = ~block
        dst[keep] = src[keep]
