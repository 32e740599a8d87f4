"""A restore run over an image sequence or a single still: ``io.sequence`` reads the files, the same faces,
restore and compose stages as a video run work on them, and ``ImageSequenceWriter`` writes each finished
frame into the output folder under the input's name, codec and bit depth.

Every frame is written as soon as it is composed (one atomic file each), so an interrupted run loses
nothing: a rerun skips the numbers already in the output folder. A faceless frame is written from its
decoded samples, unchanged. When ``-o`` names a video file the frames are encoded into it instead, and
``--audio FILE.wav`` is muxed with them: its sample 0 at the first frame's time, copied bit for bit where the
container holds the WAV's PCM, else re-encoded (``io.side_streams.SideStreams`` decides, as for a video's audio).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av

from gpen_video.config import Config
from gpen_video.errors import ConfigError, InputError, OutputError
from gpen_video.io.colour import colour_of_frame
from gpen_video.io.encoding import EncodeSettings
from gpen_video.io.formats import output_caps
from gpen_video.io.image_headers import HeaderError, ImageHeader, keep_header, read_header, video_losses
from gpen_video.io.metadata import VideoMetadata
from gpen_video.io.output import check_output_path
from gpen_video.io.plan import preflight
from gpen_video.io.probe import MediaInfo, VideoInfo
from gpen_video.io.reader import ReadStats
from gpen_video.io.scan_encoding import scan_encoding, yuv_colour
from gpen_video.io.sequence import (
    CODEC_OF_SUFFIX,
    ImageSequence,
    ImageSequenceReader,
    ImageSequenceWriter,
    decode_image,
    deep_format,
    encode_image,
    find_sequence,
    output_codec,
    writable_format,
)
from gpen_video.io.writer import VideoWriter, Writer
from gpen_video.restore.device import Device
from gpen_video.run.field_order import output_info
from gpen_video.run.job import RestoreJob
from gpen_video.run.records import Composed, Decoded
from gpen_video.run.sinks import NO_PACKETS, FolderSink, FrameSink, VideoFileSink

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".mxf", ".avi", ".webm", ".m4v", ".ts")


def default_sequence_output(spec: Path) -> Path:
    """Beside the frames' folder, never inside it (a later glob of that folder must not meet the output):
    ``scan/`` -> ``scan.restored/``; ``scan/reel_%06d.dpx`` -> ``reel.restored/`` and ``"scan/*.tif"`` ->
    ``scan.restored/``, both beside ``scan/``; a still ``a.png`` -> ``a.restored/`` beside it, as a video's."""
    name = spec.name
    if spec.is_dir():
        return spec.with_name(f"{spec.resolve().name}.restored")
    if "%" not in name and "*" not in name and "?" not in name and "[" not in name:
        return spec.parent / f"{spec.stem}.restored"  # a still
    folder = spec.parent.resolve()
    stem = name.split("%")[0].split("*")[0].split("?")[0].split("[")[0].rstrip("_-. ")
    return folder.parent / f"{stem or folder.name or 'sequence'}.restored"


def check_sequence_config(config: Config, sequence: ImageSequence, to_video: bool) -> None:
    """Options that do not apply to a sequence (or to its output), refused in one line each."""
    if config.start is not None or config.duration is not None:
        raise ConfigError("--start/--duration apply to video input; name the frames to restore with a pattern or glob")
    if config.input.audio is not None and not to_video:
        raise ConfigError(
            "--audio is muxed only into a video output; name a video file with -o (e.g. out.mov) or leave --audio out"
        )


def sequence_run(job: RestoreJob, stack: contextlib.ExitStack) -> tuple[SequenceSource, FrameSink]:
    """The source and sink for the sequence (or still) ``job.input`` names, written into the folder ``job.output``
    or into the video file it names; ``stack`` holds what must stay open for the run (the ``--audio`` file)."""
    config = job.config
    to_video = job.output.suffix.lower() in VIDEO_SUFFIXES
    if job.output.suffix.lower() in CODEC_OF_SUFFIX:
        raise OutputError(f"{job.output}: a sequence (or still) is written into a folder; give a folder with -o")
    sequence = find_sequence(job.input, on_gap="warn" if config.input.allow_gaps else "error")
    check_sequence_config(config, sequence, to_video)
    if to_video:
        return _into_video(job, sequence, stack)
    return _into_folder(job, sequence)


def _into_folder(job: RestoreJob, sequence: ImageSequence) -> tuple[SequenceSource, FrameSink]:
    """One image file a frame, each written (atomically) as soon as it is composed: a rerun skips those done."""
    config = job.config
    fps = Fraction(config.input.fps)
    writer = ImageSequenceWriter(job.output, sequence, ImageSequenceReader(sequence, fps).format.pix_fmt)
    done = set() if config.output.overwrite else writer.done_numbers()
    if sequence.is_still and writer.is_done(sequence.files[0].number) and not config.output.overwrite:
        raise OutputError(f"{writer.path_for(sequence.files[0].number)} already exists; pass --overwrite")
    if done:
        log.warning("%s: %d frame(s) already restored there; going on from the others", job.output, len(done))
    source = SequenceSource(job.input, sequence, ImageSequenceReader(sequence, fps, skip=done), resumed=bool(done),
                            notes=writer.header_notes)  # fmt: skip
    settings = EncodeSettings(writer.codec, writer.pix_fmt, reason="an image sequence is written as the input's "
                              "kind and bit depth")  # fmt: skip
    sink = FolderSink(writer, source.reader.number_of, output_info(source.info, config), settings,
                      source.reader.time_base, kept=len(done))  # fmt: skip
    return source, sink


def _into_video(
    job: RestoreJob, sequence: ImageSequence, stack: contextlib.ExitStack
) -> tuple[SequenceSource, FrameSink]:
    """The frames encoded as a video run's are (``choose_encoding``, ``VideoFileSink``), with ``--audio`` muxed in
    sync and cut to the pictures' length, into a temporary file moved into place once verified."""
    config = job.config
    if config.output.encoder_backend == "ffmpeg":
        raise ConfigError("a sequence is encoded with PyAV; leave --encoder-backend ffmpeg out")
    check_output_path(job.input, job.output, config.output.overwrite)
    source = SequenceSource(job.input, sequence, ImageSequenceReader(sequence, Fraction(config.input.fps)))
    out_info, settings = video_plan(source, job.output, config)
    source.notes.extend(into_video_notes(source, settings))
    caps = output_caps(job.output)
    preflight(job.output, out_info, settings, caps)
    audio_path = Path(config.input.audio) if config.input.audio is not None else None
    audio = None
    if audio_path is not None:  # opened before any work
        wav = stack.enter_context(open_audio(audio_path))
        audio = AudioFile(wav, audio_path, picture_end(sequence, source.reader))

    def open_writer(temp: Path) -> Writer:
        # the sequence's first frame is at 0, so is the WAV's sample 0: no offset
        writer = VideoWriter(temp, out_info, settings, [audio.stream] if audio else [], offset=Fraction(0))
        for plan in writer.plans:
            if plan.output_index is None:
                writer.abort()
                raise OutputError(f"{job.output}: --audio {audio_path} cannot go in it: {plan.reason}")
        return writer

    notes = (lambda: audio.notes(source.reader.fps)) if audio is not None else None
    return source, VideoFileSink(job.output, out_info, settings, audio or NO_PACKETS, open_writer, notes)


@dataclass(frozen=True)
class SequencePlan:
    """What restore would write for a sequence (``probe --plan``): a folder of images or a video file."""

    output: str
    kind: str  # folder | video
    codec: str
    pix_fmt: str
    reason: str
    notes: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        lines = [f"plan: {self.kind} {self.output}, {self.codec} {self.pix_fmt} ({self.reason})"]
        return lines + [f"  not kept: {note}" for note in self.notes]


def plan_sequence(spec: Path, output: Path | None, config: Config) -> SequencePlan:
    """What ``restore spec -o output`` would write: the same decisions as the run, the first frame encoded in
    memory to learn what of its header the output keeps."""
    output = output or default_sequence_output(spec)
    sequence = find_sequence(spec, on_gap="list")
    reader = ImageSequenceReader(sequence, Fraction(config.input.fps))
    source = SequenceSource(spec, sequence, reader)
    if output.suffix.lower() in VIDEO_SUFFIXES:
        _, settings = video_plan(source, output, config)
        reason = f"{settings.describe()}; {settings.reason}"
        notes = tuple(into_video_notes(source, settings))
        return SequencePlan(str(output), "video", settings.codec, settings.pix_fmt, reason, notes)
    codec = output_codec(sequence)
    pix_fmt = writable_format(codec, reader.format.pix_fmt if codec == sequence.codec else deep_format(codec))
    first = decode_image(sequence.files[0].path)
    encoded = encode_image(first if first.format.name == pix_fmt else first.reformat(format=pix_fmt), codec)
    _, notes = keep_header(sequence.files[0].path, sequence.codec, encoded, codec)
    kept = (
        "its header fields kept"
        if sequence.codec in ("dpx", "tiff", "png") and codec == sequence.codec
        else "no header"
    )
    reason = f"one file a frame, named as the input's ({sequence.pattern}), {kept}"
    return SequencePlan(str(output), "folder", codec, pix_fmt, reason, tuple(notes))


def video_plan(source: SequenceSource, output: Path, config: Config) -> tuple[MediaInfo, EncodeSettings]:
    """The output stream's description and encode settings for the sequence into the video file ``output``:
    ProRes into a MOV (``io.scan_encoding``), an RGB scan's colour as the Y'CbCr samples carry it."""
    out_info = output_info(source.info, config)
    settings = scan_encoding(out_info.video, config.output, output_caps(output))
    video = dataclasses.replace(out_info.video, colour=yuv_colour(out_info.video.colour, settings.pix_fmt))
    return dataclasses.replace(out_info, video=video), settings


def into_video_notes(source: SequenceSource, settings: EncodeSettings) -> list[str]:
    """What of the scan a video output does not keep as it is: header fields, the RGB samples, the frame rate."""
    colour = source.info.video.colour
    notes = video_losses(source.header, colour.transfer_id, colour.primaries_id)
    if colour.is_rgb and not av.VideoFormat(settings.pix_fmt).is_rgb:
        notes.append(f"the RGB scan is written as {settings.pix_fmt} Y'CbCr (BT.709 matrix, limited range) for "
                     f"{settings.codec}")  # fmt: skip
    header_rate = getattr(source.header, "frame_rate", None)
    if header_rate and abs(header_rate - float(source.reader.fps)) > 0.01:
        notes.append(f"the DPX header says {header_rate:.3f} fps; the video is timed at --fps "
                     f"{float(source.reader.fps):g}")  # fmt: skip
    return notes


class SequenceSource:
    """An image sequence's (or a still's) frames for a run, in a video's terms (``info``); ``resumed``: frames
    already in the output folder are skipped, so none left to read is no error; ``notes``: what the output did
    not keep of the files (said with the run's warnings)."""

    def __init__(self, spec: Path, sequence: ImageSequence, reader: ImageSequenceReader, resumed: bool = False,
                 notes: list[str] | None = None):  # fmt: skip
        self.spec, self.sequence, self.reader, self.resumed = spec, sequence, reader, resumed
        self.notes = notes if notes is not None else []
        self.header = first_header(sequence)
        self.info = sequence_info(spec, sequence, reader, self.header)

    def decode_for(self, device: Device | None, threaded: bool) -> None:
        """Image files decode on the CPU, whatever the restorer's device."""

    def __enter__(self) -> SequenceSource:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def decoded(self) -> Iterator[Decoded]:
        colour = self.info.video.colour
        any_frame = False
        for frame in self.reader:
            any_frame = True
            yield Decoded(frame, frame.upright(colour, 0))
        if not any_frame and not self.resumed:
            raise InputError(f"{self.spec}: no picture could be read")

    def wanted(self) -> Callable[[int], bool] | None:
        return None

    def outputs(self, items: Iterable[Composed]) -> Iterator[Composed]:
        return iter(items)

    def read_stats(self) -> ReadStats:
        return ReadStats(frames=self.reader.frames_read, decoded=self.reader.frames_read)

    def warnings(self) -> list[str]:
        said = list(self.notes)
        if self.sequence.gaps:
            missing = sum(g.count for g in self.sequence.gaps)
            said.append(f"{missing} frame(s) missing in the input sequence were left out (--allow-gaps)")
        return said


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


def picture_end(sequence: ImageSequence, reader: ImageSequenceReader) -> Fraction:
    """Seconds from the first frame to the end of the last (a numbered sequence's holes included)."""
    last = sequence.files[-1].number
    frames = 1 if last is None else last - sequence.start_number + 1
    return frames * reader.time_base


class AudioFile:
    """The ``--audio`` file's packets by time for ``run.sinks.VideoFileSink`` (read as they fall due, never all held),
    up to ``end``: the pictures' length. A longer file is cut there (a PCM packet across the end at the
    sample; another codec's after the packet that crosses it); a shorter one is measured, and ``notes`` says
    by how much either differs."""

    def __init__(self, container: av.container.InputContainer, path: Path, end: Fraction) -> None:
        self.stream = container.streams.audio[0]
        self.path, self.end = path, end
        self._packets = container.demux(self.stream)
        self._held: av.Packet | None = None
        self.length = Fraction(0)  # seconds of audio muxed (after a cut: up to ``end``)
        self.cut: Fraction | None = None  # seconds left out past ``end``, when the file is longer

    def due(self, until: Fraction) -> list[av.Packet]:
        return self._take(min(until, self.end))

    def rest(self) -> list[av.Packet]:
        return self._take(self.end)

    def _take(self, limit: Fraction) -> list[av.Packet]:
        out = []
        while self.cut is None:
            packet = self._held if self._held is not None else next(self._packets, None)
            self._held = None
            if packet is None:
                break
            if packet.size == 0 or packet.pts is None:
                continue
            tb = Fraction(packet.time_base)
            start, stop = packet.pts * tb, (packet.pts + (packet.duration or 0)) * tb
            if start >= self.end:
                self._cut_at(start)
                break
            if start > limit:
                self._held = packet
                break
            if stop > self.end:
                packet = self._trimmed(packet, self.end - start)
                self._cut_at(stop)
                stop = start + (packet.duration or 0) * tb
            self.length = max(self.length, stop)
            out.append(packet)
        return out

    def _cut_at(self, reached: Fraction) -> None:
        """The file goes on past ``end``: what is left out, from its header's duration where it has one."""
        total = self.stream.duration * Fraction(self.stream.time_base) if self.stream.duration else reached
        self.cut = max(total, reached) - self.end

    def _trimmed(self, packet: av.Packet, keep: Fraction) -> av.Packet:
        """``packet`` cut to its first ``keep`` seconds: PCM at the sample; any other codec kept whole."""
        if not self.stream.codec_context.name.startswith("pcm_") or not packet.duration:
            return packet
        tb = Fraction(packet.time_base)
        samples = int(keep / tb)  # a WAV's packets count samples (time base 1/rate)
        frame_bytes = packet.size // packet.duration
        cut = av.Packet(bytes(packet)[: samples * frame_bytes])
        cut.pts, cut.dts, cut.duration, cut.time_base = packet.pts, packet.dts, samples, packet.time_base
        cut.stream = packet.stream
        return cut

    def notes(self, fps: Fraction) -> list[str]:
        """What the run says when the audio and the pictures differ in length by more than half a frame."""
        half_frame = 1 / (2 * fps)
        picture = f"the pictures' {float(self.end):.3f} s ({float(fps):g} fps)"
        if self.cut is not None and self.cut > half_frame:
            return [f"--audio {self.path.name}: {float(self.cut):.3f} s longer than {picture}; cut to their length"]
        if self.cut is None and self.end - self.length > half_frame:
            return [f"--audio {self.path.name}: ends {float(self.end - self.length):.3f} s before the end of "
                    f"{picture}; the rest is silent"]  # fmt: skip
        return []


def first_header(sequence: ImageSequence) -> ImageHeader | None:
    """The first file's DPX or TIFF header (None for PNG/EXR, or one that cannot be read: the decoder says why)."""
    try:
        return read_header(sequence.files[0].path, sequence.codec)
    except HeaderError:
        return None


def sequence_info(
    spec: Path, sequence: ImageSequence, reader: ImageSequenceReader, header: ImageHeader | None = None
) -> MediaInfo:
    """What the run's report and stages need to know of the sequence, in a video's terms: the DPX header's pixel
    aspect and timecode (the first file's) as a video's, so a video output carries them."""
    colour = colour_of_frame(decode_image(sequence.files[0].path))
    fmt = reader.format
    count = len(sequence.files)
    aspect = getattr(header, "pixel_aspect", None)
    sar = Fraction(*aspect) if aspect and Fraction(*aspect) != 1 else None
    video = VideoInfo(index=0, codec=sequence.codec, profile=None, width=fmt.width, height=fmt.height,
                      time_base=reader.time_base, frame_rate=reader.fps, is_vfr=False, frame_count=count,
                      start_time=0.0, duration=float(count / reader.fps), rotation=0, colour=colour, bit_rate=None,
                      sample_aspect_ratio=sar, field_order=None, timecode=getattr(header, "timecode", None),
                      frame_count_source="scan", metadata=VideoMetadata(sample_aspect_ratio=sar))  # fmt: skip
    size = sum(f.path.stat().st_size for f in sequence.files)
    return MediaInfo(path=spec, format_name=f"image sequence: {sequence.describe()}", size_bytes=size,
                     duration=video.duration, video=video)  # fmt: skip
