"""Where a run's composed frames go: a video file (``VideoFileSink``: written with the side packets due by each
frame's time merged in, closed, verified against what was written, then renamed into place) or a folder of
images (``FolderSink``: one file a frame, each written atomically as soon as it is composed).

``run.run`` hands a sink the composed frames once the first frame is decoded, so a video sink opens its
writer only when a range start's offset is known.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av

from gpen_video.errors import ConfigError, DependencyError
from gpen_video.io.container_keeps import container_keeps, remux_with_aspect
from gpen_video.io.encoding import INTERMEDIATE_ENCODERS, EncodeSettings
from gpen_video.io.ffmpeg_backend import find_ffmpeg
from gpen_video.io.field_analysis import CODEC_FIELD_ORDER
from gpen_video.io.field_check import check_written_fields
from gpen_video.io.formats import container_family, muxer_for_extension
from gpen_video.io.output import atomic_output, verify_video
from gpen_video.io.probe import MediaInfo
from gpen_video.io.reader import Frame
from gpen_video.io.sequence import ImageSequenceWriter
from gpen_video.io.writer import Writer, WriteResult
from gpen_video.run.job import ProgressCallback
from gpen_video.run.records import Composed
from gpen_video.run.report import StageTimes


class PacketSource(Protocol):
    """Side packets by time: ``io.side_packets.SidePackets`` (a video's own streams) or an ``--audio`` file."""

    def due(self, until: Fraction) -> list[av.Packet]: ...

    def rest(self) -> list[av.Packet]: ...


class _NoPackets:
    def due(self, until: Fraction) -> list[av.Packet]:
        return []

    def rest(self) -> list[av.Packet]:
        return []


NO_PACKETS = _NoPackets()


class FrameSink(Protocol):
    """The output end of a run: the stream it writes (``info``: the output's size and timing), how (``settings``),
    and ``write``, which takes every composed frame and returns what was written."""

    info: MediaInfo
    settings: EncodeSettings

    def write(self, items: Iterable[Composed], times: StageTimes, progress: ProgressCallback | None) -> WriteResult:
        """Every emitted frame of ``items``, written; busy time counted as ``encode`` (and ``verify``)."""
        ...

    def warnings(self) -> list[str]:
        """What the run must say about the output beyond the report's own warnings (even with -q)."""
        ...


class VideoFileSink:
    """A verified video file: ``open_writer(temp)`` opens the writer on the temporary sibling of ``output`` (the
    caller's choice of PyAV or the ffmpeg CLI, and of the side streams), ``packets`` are merged in by time."""

    def __init__(
        self,
        output: Path,
        info: MediaInfo,
        settings: EncodeSettings,
        packets: PacketSource,
        open_writer: Callable[[Path], Writer],
        notes: Callable[[], list[str]] | None = None,
        verify: bool = True,
    ) -> None:
        self.output, self.info, self.settings = output, info, settings
        self.packets, self.open_writer, self._notes = packets, open_writer, notes
        self.verify = verify  # False: a batch segment, checked from its packets where assembly reads it
        # before any work: refuses what the output cannot keep. A segment (NUT) keeps neither aspect nor field
        # tag; assembly sets both on the output (and the batch runner asks this of the output before any work)
        self.aspect_binary = aspect_binary(output, info, settings) if verify else None

    def write(self, items: Iterable[Composed], times: StageTimes, progress: ProgressCallback | None) -> WriteResult:
        items = _from_first_emitted(items)  # a range's warm-up passes first: its start (the offset) is then known
        with atomic_output(self.output) as temp:
            writer = self.open_writer(temp)
            finish = self._finish if self.verify else None
            return encode_frames(items, writer, self.packets, temp, times, progress, finish, self.verify)

    def _finish(self, temp: Path, result: WriteResult) -> None:
        """The closed file at ``temp`` made whole and checked: the pixel aspect set where the muxer left it out
        (one stream copy through the ffmpeg CLI), then its field order read back from the tag and the frames."""
        if result.aspect_missing is not None:
            video = self.info.video
            binary = self.aspect_binary or _ffmpeg_for_aspect(self.output, result.aspect_missing, self.settings)
            remux_with_aspect(temp, result.aspect_missing, video.width, video.height, binary)
        check_written_fields(temp, CODEC_FIELD_ORDER.get(self.info.video.metadata.field_order_id, "unknown"))

    def warnings(self) -> list[str]:
        return self._notes() if self._notes is not None else []


def aspect_binary(output: Path, info: MediaInfo, settings: EncodeSettings) -> str | None:
    """Before any work: ConfigError where the output's muxer would lose the field order or the pixel aspect (unless
    it is Matroska's, which one stream copy through the ffmpeg CLI sets afterwards: FFV1, ProRes, raw video); that
    ffmpeg where it will be needed, else None."""
    video = info.video
    sar = Fraction(video.metadata.sample_aspect_ratio or video.sample_aspect_ratio or 1)
    order = CODEC_FIELD_ORDER.get(video.metadata.field_order_id, "unknown")
    muxer = muxer_for_extension(output.suffix)
    master = settings.codec in INTERMEDIATE_ENCODERS.values()
    if muxer is None or (sar == 1 and order not in ("tff", "bff") and not master):
        return None
    keeps = container_keeps(muxer, settings, video)
    if order in ("tff", "bff") and keeps.field_order not in (None, "unknown", order):  # unknown: frames only (DV)
        raise ConfigError(
            f"{output.name}: {settings.codec} video in {muxer} is stored {keeps.field_order}, so its {order} field "
            f"order would be lost; write {_keeping_suffixes(output)}, or pass --deinterlace frame"
        )
    if keeps.aspect:
        return None
    if container_family(muxer) != "matroska":
        raise ConfigError(
            f"{output.name}: {settings.codec} video in {muxer} does not keep the pixel aspect "
            f"{sar.numerator}:{sar.denominator}; write {_keeping_suffixes(output)}"
        )
    return _ffmpeg_for_aspect(output, sar, settings)


def _keeping_suffixes(output: Path) -> str:
    """The containers to suggest instead of ``output``'s (never its own): '.mov or .mkv', or the other one."""
    others = [suffix for suffix in (".mov", ".mkv") if suffix != output.suffix.lower()]
    return " or ".join(others)


def _ffmpeg_for_aspect(output: Path, sar: Fraction, settings: EncodeSettings) -> str:
    try:
        return find_ffmpeg()
    except DependencyError as exc:
        raise ConfigError(
            f"{output.name}: {settings.codec} in {output.suffix} cannot keep the pixel aspect "
            f"{sar.numerator}:{sar.denominator} without an ffmpeg binary to set it; install ffmpeg, or write .mov"
        ) from exc

    def warnings(self) -> list[str]:
        return self._notes() if self._notes is not None else []


class FolderSink:
    """One image file a frame in ``writer``'s folder, numbered by ``number_of``; ``kept`` frames were already there
    (a resumed run) and are said so."""

    def __init__(
        self,
        writer: ImageSequenceWriter,
        number_of: Callable[[Frame], int],
        info: MediaInfo,
        settings: EncodeSettings,
        time_base: Fraction,
        kept: int = 0,
    ) -> None:
        self.writer, self.number_of, self.info, self.settings = writer, number_of, info, settings
        self.time_base, self.kept = time_base, kept

    def write(self, items: Iterable[Composed], times: StageTimes, progress: ProgressCallback | None) -> WriteResult:
        written = 0
        for item in items:
            if not item.emit:
                continue
            with times.timing("encode"):
                self.writer.write(self.number_of(item.frame), item.output)
            written += 1
            if progress:
                progress(written)
        return WriteResult(written, [], self.time_base)

    def warnings(self) -> list[str]:
        if not self.kept:
            return []
        return [f"{self.kept} frame(s) were already in {self.writer.folder} and were kept as they are"]


def _from_first_emitted(items: Iterable[Composed]) -> Iterator[Composed]:
    """``items`` from the first one written on (those before are a range's or a segment's warm-up), read up to it
    before this returns, so whoever opens the writer next sees that frame decoded (a range's offset is known)."""
    frames = iter(items)
    first = next((item for item in frames if item.emit), None)
    return _resumed(first, frames)


def _resumed(first: Composed | None, rest: Iterator[Composed]) -> Generator[Composed, None, None]:
    """``first``, then ``rest``; closing it closes ``rest`` (``encode_frames`` stops the stages that way)."""
    if first is not None:
        yield first
    yield from rest


def encode_frames(
    items: Iterable[Composed],
    writer: Writer,
    side: PacketSource,
    temp: Path,
    times: StageTimes,
    progress: ProgressCallback | None = None,
    finish: Callable[[Path, WriteResult], None] | None = None,
    verify: bool = True,
) -> WriteResult:
    """Write every emitted frame at its ``pts`` and the side packets due before it; close ``writer`` and check
    the file at ``temp`` (frame count, per-frame timestamps, side stream starts) against what was written, after
    ``finish`` (which may complete the file: its pixel aspect) has had it. ``verify`` False: a batch segment,
    checked where assembly reads it, so it is not read twice.

    Any failure (Ctrl-C too) aborts the writer (the caller's ``atomic_output`` removes ``temp``) and closes
    ``items`` at once, so the stage threads behind it stop before the caller closes the reader they decode
    from (held by this frame's traceback, an open generator would outlive the reader: a crash at exit).
    """
    frames = iter(items)
    try:
        written = 0
        for item in frames:
            with times.timing("encode"):
                writer.write_packets(side.due(item.frame.pts * item.frame.time_base))
                if item.emit:
                    writer.write(item.output, item.frame.pts)
                    written += 1
            if progress:
                progress(written)
        with times.timing("encode"):
            writer.write_packets(side.rest())
            result = writer.close()
    except BaseException:
        writer.abort()
        if isinstance(frames, Generator):
            frames.close()
        raise
    with times.timing("verify"):
        if finish is not None:
            finish(temp, result)
        if verify:
            verify_video(temp, result.pts, result.time_base, result.side_starts)
    return result
