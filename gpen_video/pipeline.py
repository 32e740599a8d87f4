"""The one place that knows the whole flow: read → faces → align → restore → compose → write.

A frame with no face goes to the encoder as the decoded source samples (one encode, no colour
round trip). A frame with faces is converted to the working BGR image, its faces are aligned,
restored and pasted back, and the result is converted to the encoder's format with the stream's own
matrix; samples outside the paste mask are then copied back from the source so they stay exact.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from gpen_video.config import Config
from gpen_video.errors import ConfigError, InputError
from gpen_video.io.encoding import PYAV_ENCODERS, EncodeSettings, choose_encoding
from gpen_video.io.ffmpeg_backend import FfmpegEncoders, FfmpegWriter, find_ffmpeg
from gpen_video.io.formats import output_caps
from gpen_video.io.output import atomic_output, check_output_path, verify_video
from gpen_video.io.plan import preflight
from gpen_video.io.probe import MediaInfo, probe
from gpen_video.io.reader import Frame, VideoReader
from gpen_video.io.splice import splice_composed
from gpen_video.io.writer import VideoWriter
from gpen_video.memory import pin_malloc_mmap_threshold
from gpen_video.report import FlickerMeter, RunReport, StageTimes
from gpen_video.restore.batcher import CrossFrameBatcher
from gpen_video.restore.restorer import IdentityRestorer, Restorer
from gpen_video.stage_threads import Flow

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


def planned_frames(info: MediaInfo, config: Config) -> int:
    """Frames a run over ``info`` with ``config``'s range will process (for progress bars)."""
    total = info.video.frame_count
    if config.start is None and config.duration is None:
        return total
    rate = float(info.video.frame_count / info.video.duration) if info.video.duration else 25.0
    remaining = max(info.video.duration - (config.start or 0.0), 0.0)
    seconds = remaining if config.duration is None else min(config.duration, remaining)
    return max(round(seconds * rate), 0)


def run_restore(job: RestoreJob, threaded: bool = True) -> RunReport:
    """Restore ``job.input`` into ``job.output``; the output appears only if complete and verified.

    ``threaded=False`` runs the same stages one after another in this thread (a baseline for benches).
    """
    config = job.config
    pin_malloc_mmap_threshold()  # flat memory over hours of video (see gpen_video/memory.py)
    check_output_path(job.input, job.output, config.output.overwrite)
    info = job.info or probe(job.input)
    # issue 12: --start counts from the stream's start (the reader adds it)
    if config.start is not None and config.start >= info.video.duration:
        raise InputError(f"{job.input}: --start {config.start:.3f}s is past the end ({info.video.duration:.3f}s)")
    binary = find_ffmpeg(config.output.ffmpeg_binary) if config.output.encoder_backend == "ffmpeg" else None
    caps = output_caps(job.output)  # issue 12: what the output container holds, asked of FFmpeg
    settings = choose_encoding(info.video, config.output, FfmpegEncoders(binary) if binary else PYAV_ENCODERS, caps)
    preflight(job.output, info, settings, caps, binary)  # issue 12: encoder options, container, free space
    restorer = job.restorer or _load_restorer(config)
    batch_size = config.restore.batch_size or default_batch_size(restorer)
    report = RunReport.begin(job.input, job.output, info, settings, restorer.name, config)
    times = StageTimes()
    segment = job.segment
    start, duration = config.start, config.duration
    if segment is not None:
        start = segment.decode_from
        duration = None if segment.decode_until is None else segment.decode_until - segment.decode_from
    wanted = segment.emits if segment is not None else None
    with VideoReader(job.input, info, config.reader, start, duration) as reader:
        frames = _frames_with_packets(reader, job.input, info)
        first = next(frames)  # decoded before the writer opens: a range start's offset is then known
        device = device_for_path(restorer, config)
        faces = FaceTrackStage(config, info, restorer.size, wanted, device)
        batcher = CrossFrameBatcher(restorer, batch_size, stream=_stage_stream(device))
        composer = ComposeStage(config, info, workers=2 if threaded else 0, device=device)
        flow = Flow(itertools.chain([first], frames), [faces, batcher, composer], times, threaded=threaded)
        with atomic_output(job.output) as temp:
            writer = _open_writer(temp, info, settings, reader, config, binary, video_only=segment is not None)
            writer.copy_container_metadata(reader.container)
            try:
                written = 0
                for work in flow:
                    t0 = time.perf_counter()
                    writer.write_packets(work.packets)
                    if work.frame is not None and work.emit:
                        writer.write(work.output, work.frame.pts)
                        written += 1
                    times.add("encode", time.perf_counter() - t0)
                    if job.progress and work.frame is not None:
                        job.progress(written)
                t0 = time.perf_counter()
                result = writer.close()
                times.add("encode", time.perf_counter() - t0)
            except BaseException:
                writer.abort()
                raise
            t0 = time.perf_counter()
            verify_video(temp, result.pts, result.time_base, result.side_starts)
            times.add("verify", time.perf_counter() - t0)
        summary = faces.summary()
        summary["faces_restored"] = batcher.faces_restored
        summary["frames_with_faces"] = composer.frames_with_faces
        report.finish(reader.stats, result, summary, times)
        report.flicker = composer.flicker.summary()
        report.restore = {"restorer": restorer.name, "batch_size": batch_size, "batches": batcher.batches,
                          "device": str(getattr(restorer, "device", "cpu")), "precision": _precision_of(restorer),
                          "device_path": faces.device is not None}  # fmt: skip
        report.faces_per_second = round(batcher.faces_restored / report.wall_seconds, 3) if report.wall_seconds else 0
    return report


def device_for_path(restorer: Restorer, config: Config) -> Any:
    """The torch device frames should stay on for align/restore/compose, or None for the NumPy path.

    ``auto`` keeps frames on the GPU when the restorer runs on CUDA; ``on`` forces the torch path on
    the restorer's device (on CPU this is the twin the tests compare with the NumPy path).
    """
    choice = config.restore.device_path
    if choice not in ("auto", "on", "off"):
        raise ConfigError(f"restore.device_path must be auto, on or off, got '{choice}'")
    if choice == "off" or not hasattr(restorer, "restore_device"):
        if choice == "on":
            raise ConfigError(f"restore.device_path on needs a PyTorch restorer; {restorer.name} is not one")
        return None
    device = getattr(restorer, "device", None)
    if choice == "auto":
        return device if device is not None and getattr(device, "type", "") == "cuda" else None
    import torch

    return device if device is not None else torch.device("cpu")


def _stage_stream(device: Any) -> Any:
    """A CUDA stream for one stage of the device path (a pass-through on CPU); None off the device path."""
    if device is None:
        return None
    from gpen_video.restore.streams import StageStream

    return StageStream(device)


def _precision_of(restorer: Restorer) -> str:
    dtype = str(getattr(restorer, "dtype", "float32")).replace("torch.", "")
    return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(dtype, dtype)


def default_batch_size(restorer: Restorer) -> int:
    """Faces per restore call when the user did not say: the restorer's own advice, else 4."""
    suggest = getattr(restorer, "suggest_batch_size", None)
    return int(suggest()) if callable(suggest) else 4


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

    options = {"compile": True} if r.compile else {}
    return load_restorer(r.model, device=r.device, precision=r.precision, weights_dir=r.weights_dir,
                         identity_size=r.identity_size, **options)  # fmt: skip


def _frames_with_packets(reader: VideoReader, path: Path, info: MediaInfo) -> Iterator[FrameWork]:
    """The reader's frames as work items, each carrying the side packets demuxed before it and its upright
    working image (converted here, in the decode thread: at 4K the conversion alone is ~40 ms a frame)."""
    decoded = False
    colour, rotation = info.video.colour, info.video.rotation
    for frame in reader:
        decoded = True
        yield FrameWork(frame=frame, packets=reader.take_packets(), image=frame.upright(colour, rotation))
    if not decoded:
        raise InputError(f"{path}: no video frame could be decoded in the requested range")
    yield FrameWork(frame=None, packets=reader.take_packets())  # packets after the last frame


@dataclass(eq=False)
class FrameWork:
    """One frame on its way through the flow, and what each stage learnt about it."""

    frame: Frame | None  # None: a last item carrying only side packets
    packets: list[av.Packet] = field(default_factory=list)
    emit: bool = True  # False: a segment's warm-up frame, decoded for tracking only
    image: np.ndarray | None = None  # upright working image, kept only while its faces are needed
    faces: list[Any] = field(default_factory=list)
    batch: Any = None  # AlignedBatch
    crops: Any = None  # (n, S, S, 3) uint8 for the restorer: an array, or a device tensor
    restored: Any = None  # restored crops: an array, or a device tensor on the device path
    output: av.VideoFrame | None = None
    device_image: Any = None  # device path: the upright frame as a tensor on the restorer's device
    affines: np.ndarray | None = None  # device path: frame -> crop transforms
    source_crops: Any = None  # device path: aligned crops in the frame's bit depth (for colour matching)
    ready: Any = None  # device path: CUDA event after the last GPU work queued for this frame


class FaceTrackStage:
    """Detect, track and smooth faces (with look-ahead), then align the faces of frames to be restored."""

    name = "faces"

    def __init__(
        self,
        config: Config,
        info: MediaInfo,
        crop_size: int,
        wanted: Callable[[int], bool] | None,
        device: Any = None,
    ) -> None:
        from gpen_video.faces import FaceStage

        self.device = device  # a torch device: frames with faces are uploaded once and aligned there
        self.stream = _stage_stream(device)  # the upload direction
        self.config = config
        self.colour = info.video.colour
        self.rotation = info.video.rotation
        self.crop_size = crop_size
        self.wanted = wanted
        self.stage = FaceStage(config.faces)
        self.pending: dict[int, FrameWork] = {}
        self.passthrough: list[FrameWork] = []  # items without a frame wait behind the frames before them

    def process(self, work: FrameWork) -> Iterable[FrameWork]:
        if work.frame is None:
            if not self.pending:
                return [work]
            self.passthrough.append(work)
            return []
        frame = work.frame
        work.emit = self.wanted is None or self.wanted(frame.pts)
        if work.image is None:
            work.image = frame.upright(self.colour, self.rotation)
        self.pending[frame.index] = work
        return self._release(self.stage.push(frame.index, work.image, frame.time))

    def idle(self) -> Iterable[FrameWork]:
        return ()

    def finish(self) -> Iterable[FrameWork]:
        return [*self._release(self.stage.flush()), *self.passthrough]

    def _release(self, finished: list[Any]) -> list[FrameWork]:
        from gpen_video.align import align_faces

        out = []
        for frame_faces in finished:
            work = self.pending.pop(frame_faces.index)
            if frame_faces.faces and work.emit:
                work.faces = frame_faces.faces
                if self.device is not None:
                    self._align_on_device(work)
                else:
                    work.batch = align_faces(work.image, work.faces, self.crop_size, self.config.align.template)
                    crops = work.batch.crops
                    work.crops = crops if crops.dtype == np.uint8 else (crops >> 8).astype(np.uint8)
            else:
                work.image = None  # nothing to paste: the source samples go out as they are
            out.append(work)
        if not self.pending and self.passthrough:
            out.extend(self.passthrough)
            self.passthrough = []
        return out

    def _align_on_device(self, work: FrameWork) -> None:
        """Upload the frame once, on the upload stream; cut the crops there (16-bit frames travel as int32)."""
        import torch

        from gpen_video.align import align_faces_torch

        assert work.image is not None
        with self.stream.enter():
            work.device_image = self.stream.upload(work.image)
            crops, work.affines = align_faces_torch(work.device_image, work.faces, self.crop_size,
                                                    self.config.align.template)  # fmt: skip
            work.source_crops = crops
            work.crops = crops if crops.dtype == torch.uint8 else torch.bitwise_right_shift(crops, 8).to(torch.uint8)
            work.ready = self.stream.mark()

    def summary(self) -> dict[str, Any]:
        return self.stage.report()


class ComposeStage:
    """Paste restored faces back and convert to the encoder's samples; faceless frames pass untouched.

    Frames are composed on a small thread pool (OpenCV and NumPy release the GIL) and released in the
    order they came; the flicker meter sees them in that order.
    """

    name = "compose"

    def __init__(self, config: Config, info: MediaInfo, workers: int = 2, device: Any = None) -> None:
        self.config = config
        self.device = device
        self.worker_streams = threading.local()  # the download direction, one stream per worker (device path)
        self.colour = info.video.colour
        self.rotation = info.video.rotation
        self.flicker = FlickerMeter()
        self.frames_with_faces = 0
        # workers=0: compose inline (the sequential baseline)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compose") if workers else None
        self.in_flight: deque[tuple[FrameWork, Future[Any]]] = deque()
        self.max_in_flight = 2 * workers

    def process(self, work: FrameWork) -> Iterable[FrameWork]:
        if work.frame is None or work.restored is None or work.image is None:
            future: Future[Any] = Future()
            future.set_result(None)
        else:
            self.frames_with_faces += 1
            if self.pool is not None:
                future = self.pool.submit(self._compose, work)
            else:
                future = Future()
                future.set_result(self._compose(work))
        self.in_flight.append((work, future))
        return self._release(wait=len(self.in_flight) > self.max_in_flight)

    def idle(self) -> Iterable[FrameWork]:
        return self._release(wait=False)

    def finish(self) -> Iterable[FrameWork]:
        try:
            return self._release(wait=True, everything=True)
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)

    def _release(self, wait: bool, everything: bool = False) -> list[FrameWork]:
        """Frames whose compositing is done, in order; ``wait`` blocks for the oldest one."""
        out = []
        while self.in_flight and (self.in_flight[0][1].done() or wait):
            work, future = self.in_flight.popleft()
            composed = future.result()  # re-raises a compositing error here, in order
            if work.frame is not None:
                if composed is None:
                    work.output = work.frame.source
                    self.flicker.add(None, None, None)
                else:
                    result_image, mask = composed
                    self.flicker.add(work.image, result_image, mask)
                work.image = work.crops = work.restored = work.batch = None  # free memory early
            out.append(work)
            wait = everything
        return out

    def _compose(self, work: FrameWork) -> tuple[np.ndarray, np.ndarray]:
        from gpen_video.align import compose

        assert work.frame is not None and work.image is not None
        source = work.frame.source
        if work.device_image is not None:
            image, mask = self._compose_on_device(work)
        else:
            result = compose(work.image, work.restored, work.batch, self.config.compose)
            image, mask = result.image, result.mask
        work.output = splice_composed(source, image, mask, self.colour, self.rotation)
        work.device_image = work.source_crops = None
        return image, mask

    def _compose_on_device(self, work: FrameWork) -> tuple[np.ndarray, np.ndarray]:
        """Paste back on the device, on the download stream; the composed frame comes back to the host once."""
        from gpen_video.align.torch_compose import compose_torch

        assert work.image is not None
        handed_over = (work.device_image, work.restored, work.source_crops)
        # each worker its own stream, so one frame's paste and download do not queue behind another's
        stream = getattr(self.worker_streams, "stream", None)
        if stream is None:
            stream = self.worker_streams.stream = _stage_stream(self.device)
        with stream.enter([work.ready], handed_over):
            image_t, mask_t = compose_torch(work.device_image, work.restored, work.affines, self.config.compose,
                                            crops=work.source_crops)  # fmt: skip
            image, mask = stream.download(image_t), stream.download(mask_t)
        return image.astype(work.image.dtype, copy=False), mask
