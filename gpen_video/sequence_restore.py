"""A restore run over an image sequence or a single still: ``io.sequence`` reads the files, the same faces,
restore and compose stages as a video run work on them, and ``ImageSequenceWriter`` writes each finished
frame into the output folder under the input's name, codec and bit depth.

Every frame is written as soon as it is composed (one atomic file each), so an interrupted run loses
nothing: a rerun skips the numbers already in the output folder. A faceless frame is written from its
decoded samples, unchanged. When ``-o`` names a video file the frames are encoded into it instead, and
``--audio FILE.wav`` is muxed with them: its sample 0 at the first frame's time, copied bit for bit where the
container holds the WAV's PCM, else re-encoded (``io.writer.SideStreams`` decides, as for a video's audio).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from gpen_video import __version__
from gpen_video.align.compose_stage import ComposeStage
from gpen_video.align.paths import choose_path
from gpen_video.align.records import Decoded
from gpen_video.align.stage import AlignStage
from gpen_video.archival import frame_path_choice, upscaler_for
from gpen_video.config import Config
from gpen_video.errors import ConfigError, InputError, OutputError
from gpen_video.faces.tracks_file import open_tracks
from gpen_video.io.colour import colour_of_frame
from gpen_video.io.encoding import PYAV_ENCODERS, choose_encoding
from gpen_video.io.formats import output_caps
from gpen_video.io.metadata import VideoMetadata
from gpen_video.io.output import atomic_output, check_output_path, verify_video
from gpen_video.io.plan import preflight
from gpen_video.io.probe import MediaInfo, VideoInfo
from gpen_video.io.sequence import (
    CODEC_OF_SUFFIX,
    ImageSequence,
    ImageSequenceReader,
    ImageSequenceWriter,
    decode_image,
    find_sequence,
    looks_like_sequence,
)
from gpen_video.io.sources import output_info
from gpen_video.io.writer import VideoWriter
from gpen_video.report import RunReport, StageTimes
from gpen_video.restore.batcher import CrossFrameBatcher
from gpen_video.restore.loader import load_restorer
from gpen_video.restore_job import RestoreJob
from gpen_video.stage_threads import Flow

log = logging.getLogger(__name__)

__all__ = ["default_sequence_output", "looks_like_sequence", "run_sequence_restore"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".mxf", ".avi", ".webm", ".m4v", ".ts")


def default_sequence_output(spec: Path) -> Path:
    """``scan/`` -> ``scan.restored/``; ``scan/reel_%06d.dpx`` -> ``scan/reel.restored/``; ``a.png`` ->
    ``a.restored/``."""
    sequence_name = spec.name
    if spec.is_dir():
        return spec.with_name(f"{spec.resolve().name}.restored")
    stem = sequence_name.split("%")[0].split("*")[0] if ("%" in sequence_name or "*" in sequence_name) else spec.stem
    stem = stem.rstrip("_-. ") or (spec.parent.resolve().name or "sequence")
    return spec.parent / f"{stem}.restored"


def check_sequence_config(config: Config, sequence: ImageSequence, to_video: bool) -> None:
    """Options that do not apply to a sequence (or to its output), refused in one line each."""
    if config.start is not None or config.duration is not None:
        raise ConfigError("--start/--duration apply to video input; name the frames to restore with a pattern or glob")
    if config.input.audio is not None and not to_video:
        raise ConfigError(
            "--audio is muxed only into a video output; name a video file with -o (e.g. out.mov) or leave --audio out"
        )


def run_sequence_restore(job: RestoreJob, threaded: bool = True) -> RunReport:
    """Restore the sequence (or still) ``job.input`` names into the folder ``job.output``."""
    config = job.config
    to_video = job.output.suffix.lower() in VIDEO_SUFFIXES
    if job.output.suffix.lower() in CODEC_OF_SUFFIX:
        raise OutputError(f"{job.output}: a sequence (or still) is written into a folder; give a folder with -o")
    sequence = find_sequence(job.input, on_gap="warn" if config.input.allow_gaps else "error")
    check_sequence_config(config, sequence, to_video)
    probe_reader = ImageSequenceReader(sequence, Fraction(config.input.fps))
    done: set[int] = set()
    writer: ImageSequenceWriter | VideoOutput
    if to_video:
        info = sequence_info(job.input, sequence, probe_reader)
        audio = Path(config.input.audio) if config.input.audio is not None else None
        writer = VideoOutput(job.input, job.output, output_info(info, config), config, audio)
        encode = {"codec": writer.settings.codec, "pix_fmt": writer.settings.pix_fmt,
                  "options": writer.settings.options, "reason": writer.settings.reason}  # fmt: skip
    else:
        writer = ImageSequenceWriter(job.output, sequence, probe_reader.format.pix_fmt)
        done = set() if config.output.overwrite else writer.done_numbers()
        if sequence.is_still and writer.is_done(sequence.files[0].number) and not config.output.overwrite:
            raise OutputError(f"{writer.path_for(sequence.files[0].number)} already exists; pass --overwrite")
        if done:
            log.warning("%s: %d frame(s) already restored there; going on from the others", job.output, len(done))
        encode = {"codec": writer.codec, "pix_fmt": writer.pix_fmt, "options": {},
                  "reason": "an image sequence is written as the input's kind and bit depth"}  # fmt: skip
    reader = ImageSequenceReader(sequence, Fraction(config.input.fps), skip=done)
    info = sequence_info(job.input, sequence, reader)
    restorer = job.restorer or load_restorer(config.restore)
    batch_size = config.restore.batch_size or restorer.preferred_batch()
    report = RunReport(str(job.input), str(job.output), __version__, restorer.name, info.to_dict(), encode,
                       config.to_dict(), time.time())  # fmt: skip
    times = StageTimes()
    path = choose_path(restorer, frame_path_choice(config))
    written = 0
    with contextlib.ExitStack() as outputs:  # the --tracks file is complete when the frames are
        tracks = outputs.enter_context(open_tracks(config.faces.tracks))
        faces = AlignStage(config, path, restorer.size, tracks=tracks)
        batcher = CrossFrameBatcher(path, batch_size)
        composer = ComposeStage(config.compose, info, path, 2 if threaded else 0, upscaler_for(config))
        stages = [faces, batcher, composer]
        flow = Flow(_decoded(reader, info, job.input, bool(done)), stages, times, threaded=threaded)
        video = outputs.enter_context(writer.open()) if isinstance(writer, VideoOutput) else None
        for item in flow:
            t0 = time.perf_counter()
            if video is not None:
                video.write(item.output, item.frame.pts)
            else:
                assert isinstance(writer, ImageSequenceWriter)
                writer.write(reader.number_of(item.frame), item.output)
            written += 1
            times.add("encode", time.perf_counter() - t0)
            if job.progress:
                job.progress(written)
    summary = faces.summary()
    summary["faces_restored"] = batcher.faces_restored
    summary["frames_with_faces"] = composer.frames_with_faces
    report.frames_read = report.frames_decoded = reader.frames_read
    report.frames_written = written
    report.faces = summary
    report.tracks = faces.track_summaries()
    report.stage_seconds = {k: round(v, 4) for k, v in times.seconds.items()}
    report.bounding_stage = times.bounding_stage()
    report.wall_seconds = round(time.time() - report.started, 3)
    report.fps = round(written / report.wall_seconds, 3) if report.wall_seconds > 0 else 0.0
    report.flicker = composer.flicker.summary()
    report.restore = {"restorer": restorer.name, "batch_size": batch_size, "batches": batcher.batches,
                      "device": str(restorer.device or "host"), "precision": str(restorer.precision),
                      "device_path": path.on_device}  # fmt: skip
    if sequence.gaps:
        missing = sum(g.count for g in sequence.gaps)
        report.warnings.append(f"{missing} frame(s) missing in the input sequence were left out (--allow-gaps)")
    if isinstance(writer, VideoOutput) and writer.audio_plan is not None and writer.audio_plan != "copy":
        report.warnings.append(f"--audio {config.input.audio}: {writer.audio_plan}")
    if done:
        report.warnings.append(f"{len(done)} frame(s) were already in {job.output} and were kept as they are")
    return report


class VideoOutput:
    """A sequence written into a video file: encoded as a video run would (``choose_encoding``), into a
    temporary file moved into place once its frames and timestamps are verified."""

    def __init__(self, source: Path, output: Path, info: MediaInfo, config: Config, audio: Path | None = None) -> None:
        if config.output.encoder_backend == "ffmpeg":
            raise ConfigError("a sequence is encoded with PyAV; leave --encoder-backend ffmpeg out")
        check_output_path(source, output, config.output.overwrite)
        caps = output_caps(output)
        self.settings = choose_encoding(info.video, config.output, PYAV_ENCODERS, caps)
        preflight(output, info, self.settings, caps)
        self.output, self.info, self.audio = output, info, audio
        if audio is not None:
            with open_audio(audio):  # a missing or silent file is refused before any frame is restored
                pass
        self.audio_plan: str | None = None  # how the WAV went in: copied, or re-encoded and why

    @contextlib.contextmanager
    def open(self) -> Iterator[SequenceVideo]:
        with contextlib.ExitStack() as stack:
            wav = stack.enter_context(open_audio(self.audio)) if self.audio is not None else None
            temp = stack.enter_context(atomic_output(self.output))
            side = [wav.streams.audio[0]] if wav is not None else []
            # the sequence's first frame is at 0, so is the WAV's sample 0: no offset
            writer = VideoWriter(temp, self.info, self.settings, side, offset=Fraction(0))
            output = SequenceVideo(writer, wav)
            try:
                yield output
                output.finish()
                result = writer.close()
            except BaseException:
                writer.abort()
                raise
            for plan in writer.side.plans:
                self.audio_plan = plan.action + (f" ({plan.reason})" if plan.reason else "")
                if plan.output_index is None:
                    raise OutputError(f"{self.output}: --audio {self.audio} cannot go in it: {plan.reason}")
            verify_video(temp, result.pts, result.time_base, result.side_starts)


@contextlib.contextmanager
def open_audio(path: Path) -> Iterator[av.container.InputContainer]:
    """The ``--audio`` file, opened for reading, with at least one audio stream; else one line (``InputError``)."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"--audio {path}: cannot be read ({exc}); give a WAV file") from exc
    try:
        if not container.streams.audio:
            raise InputError(f"--audio {path}: holds no audio stream; give a WAV file")
        yield container
    finally:
        container.close()


class SequenceVideo:
    """Frames into the video writer, with the ``--audio`` packets interleaved up to each frame's time."""

    LEAD = Fraction(1, 2)  # seconds of audio muxed ahead of the last video frame

    def __init__(self, writer: VideoWriter, wav: av.container.InputContainer | None) -> None:
        self.writer = writer
        self._packets = wav.demux(wav.streams.audio[0]) if wav is not None else iter(())
        self._held: av.Packet | None = None
        self._tb = writer.info.video.time_base

    def write(self, frame: av.VideoFrame, pts: int) -> None:
        self.writer.write(frame, pts)
        self._audio_until(pts * self._tb + self.LEAD)

    def finish(self) -> None:
        self._audio_until(None)

    def _audio_until(self, time: Fraction | None) -> None:
        batch = []
        while True:
            packet = self._held if self._held is not None else next(self._packets, None)
            self._held = None
            if packet is None:
                break
            if packet.size == 0:
                continue
            if time is not None and packet.pts is not None and packet.pts * packet.time_base > time:
                self._held = packet
                break
            batch.append(packet)
        if batch:
            self.writer.write_packets(batch)


def sequence_info(spec: Path, sequence: ImageSequence, reader: ImageSequenceReader) -> MediaInfo:
    """What the run's report and stages need to know of the sequence, in a video's terms."""
    colour = colour_of_frame(decode_image(sequence.files[0].path))
    fmt = reader.format
    count = len(sequence.files)
    video = VideoInfo(index=0, codec=sequence.codec, profile=None, width=fmt.width, height=fmt.height,
                      time_base=reader.time_base, frame_rate=reader.fps, is_vfr=False, frame_count=count,
                      start_time=0.0, duration=float(count / reader.fps), rotation=0, colour=colour, bit_rate=None,
                      sample_aspect_ratio=None, field_order=None, timecode=None, frame_count_source="scan",
                      metadata=VideoMetadata())  # fmt: skip
    size = sum(f.path.stat().st_size for f in sequence.files)
    return MediaInfo(path=spec, format_name=f"image sequence: {sequence.describe()}", size_bytes=size,
                     duration=video.duration, video=video)  # fmt: skip


def _decoded(reader: ImageSequenceReader, info: MediaInfo, spec: Path, resumed: bool) -> Iterator[Decoded]:
    colour = info.video.colour
    any_frame = False
    for frame in reader:
        any_frame = True
        yield Decoded(frame, frame.upright(colour, 0))
    if not any_frame and not resumed:
        raise InputError(f"{spec}: no picture could be read")
