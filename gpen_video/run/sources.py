"""Where a run's frames come from: the ``FrameSource`` contract, and ``VideoSource``, a video file's frames
(its reader opened on entry, its side packets on their own channel, and the view the stages see: as decoded,
at field rate or deinterlaced, ``run.views``). An image sequence's twin is ``run.sequence.SequenceSource``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from gpen_video.config import Config
from gpen_video.io.encoding import EncodeSettings
from gpen_video.io.ffmpeg_backend import FfmpegWriter
from gpen_video.io.hw_decode import choose_decode
from gpen_video.io.probe import MediaInfo, frame_count_warnings
from gpen_video.io.reader import RangeMargins, ReadStats, VideoReader
from gpen_video.io.side_packets import SidePackets, side_file_for
from gpen_video.io.writer import VideoWriter, Writer
from gpen_video.restore.device import Device
from gpen_video.run.job import RestoreJob
from gpen_video.run.records import Composed, Decoded
from gpen_video.run.views import DecodedView, frame_view

if TYPE_CHECKING:
    from av.codec.hwaccel import HWAccel


class FrameSource(Protocol):
    """The input end of a run, entered for the run's length: the stream as the stages see it (``info``), its
    frames, which of them are written (``wanted``), how the composed ones become output frames (``outputs``),
    and afterwards what was read and what the run must say about the input."""

    info: MediaInfo

    def decode_for(self, device: Device | None, threaded: bool) -> None:
        """Before entering: the restorer's ``device``, where a GPU run's video may be decoded (NVDEC), and whether the
        run's stages are threads (else the decode's side work stays on its thread too, so each stage's CPU time is
        its own)."""
        ...

    def __enter__(self) -> FrameSource: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def decoded(self) -> Iterator[Decoded]: ...

    def wanted(self) -> Callable[[int], bool] | None:
        """A segment's emit test on the ``pts`` the stages see (None: every frame is written)."""
        ...

    def outputs(self, items: Iterable[Composed]) -> Iterator[Composed]: ...

    def read_stats(self) -> ReadStats: ...

    def warnings(self) -> list[str]: ...


def range_margins(config: Config, info: MediaInfo) -> RangeMargins:
    """What a ``--start``/``--duration`` run (a preview) decodes around its range, so that the frames it writes get the
    faces the whole run gives them: from the faces stage's warm start (``faces.stage.warm_start``) before it, and the
    stage's look-ahead after it, each widened by ``Config.context_frames`` (fusion's and the guard's). Nothing of the
    margins is written."""
    from gpen_video.faces.stage import lookahead_frames, warm_start

    rate = info.video.frame_rate or Fraction(25)
    frame = float(1 / rate) * 1.01  # a little more than a frame: more margin changes nothing written
    start = info.video.start_time + (config.start or 0.0)
    context = config.context_frames()
    before = start - warm_start(config.faces, context).before(start, frame) if config.start is not None else 0.0
    return RangeMargins(max(before, 0.0), (lookahead_frames(config.faces, context) + 1) * frame)


class VideoSource:
    """``job``'s video file, read over its range (``--start``/``--duration``, or its batch segment's window)."""

    def __init__(self, job: RestoreJob, info: MediaInfo) -> None:
        self.job, self.info, self.config = job, info, job.config
        self.side = SidePackets()
        self.reader: VideoReader | None = None
        self.view: DecodedView | None = None
        self.hwaccel: HWAccel | None = None  # NVDEC (``decode_for``), or None: the CPU decodes
        self.threaded = True  # the comb watch measures on a thread of its own (``decode_for``)

    def decode_for(self, device: Device | None, threaded: bool) -> None:
        """NVDEC on the restorer's CUDA ``device`` (``reader.hw_decode`` auto), or where nvdec asks for it."""
        self.threaded = threaded
        setting = self.config.reader.hw_decode
        cuda = device is not None and device.is_cuda
        wanted = setting == "nvdec" or (setting == "auto" and cuda)
        self.hwaccel = choose_decode(self.info.video.codec, wanted, device.index if cuda and device else None)

    def __enter__(self) -> VideoSource:
        config, segment = self.config, self.job.segment
        start, duration, start_byte = config.start, config.duration, None
        if segment is not None:
            start, start_byte = segment.decode_from, segment.decode_from_byte
            duration = None if segment.decode_until is None else segment.decode_until - segment.decode_from
        ranged = segment is None and (start is not None or duration is not None)
        margins = range_margins(config, self.info) if ranged else None
        reader = VideoReader(
            self.job.input, self.info, config.reader, start, duration, start_byte, margins, self.hwaccel
        )
        self.reader = reader.__enter__()
        if segment is not None:  # a segment file is video only; its own side packets go to a file beside it
            reader.divert_side_packets(side_file_for(self.job.output), segment.emit_start, segment.emit_end)
        self.view = frame_view(reader, self.side, self.job.input, self.info, config, self.threaded)  # or field-aware
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.reader is not None:
            self.reader.__exit__(kind, exc, tb)

    def _opened(self) -> tuple[VideoReader, DecodedView]:
        assert self.reader is not None and self.view is not None, "a VideoSource is read inside its with block"
        return self.reader, self.view

    def decoded(self) -> Iterator[Decoded]:
        return self._opened()[1].decoded()

    def wanted(self) -> Callable[[int], bool] | None:
        """Which frames are written, by source pts: a segment's window, or the range without its margins."""
        reader, view = self._opened()
        segment = self.job.segment
        if segment is not None:
            return view.wanted(segment.emits)
        if self.config.start is not None or self.config.duration is not None:
            return view.wanted(reader.in_range)
        return None

    def outputs(self, items: Iterable[Composed]) -> Iterator[Composed]:
        return self._opened()[1].outputs(items)

    def read_stats(self) -> ReadStats:
        return self._opened()[0].stats

    def warnings(self) -> list[str]:
        """A truncated tail or a frame count off the probe's (whole-file runs only), then the field notes."""
        reader, view = self._opened()
        config, out = self.config, []
        whole = self.job.segment is None and config.start is None and config.duration is None
        if whole and not reader.stats.truncated:
            out += frame_count_warnings(self.info, reader.stats.frames)  # shows a truncated tail
        return out + view.notes  # the field order taken from the pictures, or doubted

    def writer_opener(self, info: MediaInfo, settings: EncodeSettings, binary: str | None) -> Callable[[Path], Writer]:
        """How the sink opens its writer once the first frame is decoded (the range start's offset is then known):
        PyAV's, or the ffmpeg CLI's (``binary``), with this file's side streams and container metadata; a
        segment's file holds video alone."""

        def open_writer(temp: Path) -> Writer:
            reader = self._opened()[0]
            video_only = self.job.segment is not None
            side = [] if video_only else reader.side_streams
            offset = Fraction(0) if video_only else (reader.offset or Fraction(0))
            if binary:
                writer: Writer = FfmpegWriter(temp, info, settings, binary, side, offset)
            else:
                writer = VideoWriter(temp, info, settings, side, offset=offset)
            writer.copy_container_metadata(reader.container)
            return writer

        return open_writer
