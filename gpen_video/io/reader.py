"""Streaming decode of the main video stream, keeping source timestamps and the other streams' packets.

One demux pass over the file: video packets are decoded (threaded) into ``Frame`` objects that keep
the decoded samples, ``pts`` and ``time_base`` exactly as the source had them (VFR stays VFR); every
other stream's packets are kept, untouched, for the writer to copy (``io.side_router``). Damaged packets are
counted and skipped, so a scratched tape still yields every frame that can be decoded. Where a range's pass
starts (its key frame's byte, a seek, the top) is ``io.read_start``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.codec.hwaccel import HWAccel

from gpen_video.config import ReaderConfig
from gpen_video.errors import DamagedInputError, InputError
from gpen_video.io.colour import ColourInfo, to_working
from gpen_video.io.containers import ASSEMBLED_SIDE_TYPES, PTS_DURATION_FORMATS
from gpen_video.io.cut_tail import cut_tail
from gpen_video.io.hw_decode import to_stream_format
from gpen_video.io.probe import MediaInfo, ffmpeg_reason
from gpen_video.io.read_start import StartCheck, StartFinder, StartMissed, StartWatch
from gpen_video.io.side_router import PacketRange, SideRouter

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One decoded picture, in presentation order, with its source timing."""

    index: int  # 0-based position among the frames this run processes
    pts: int  # source presentation timestamp, in time_base units
    time_base: Fraction
    source: av.VideoFrame  # the decoded samples, re-encoded as they are when no face is touched
    in_range: bool = True  # False: decoded in the range's margins (``RangeMargins``), for the faces stage only

    @property
    def time(self) -> float:
        return float(self.pts * self.time_base)

    def upright(self, colour: ColourInfo, rotation: int) -> np.ndarray:
        """The picture as a player shows it, BGR in the working bit depth."""
        return to_working(self.source, colour, rotation)


@dataclass
class SizeChange:
    """A run of decoded frames whose picture is not the stream's size (a TS joined from two recordings, a
    broadcast switching formats): each was scaled to the stream's (first) size before any stage saw it."""

    size: tuple[int, int]  # the run's own picture size
    stream_size: tuple[int, int]  # the size every frame is written at
    first_frame: int  # frame numbers among those handed on (0-based), and times (seconds)
    first_time: float
    last_frame: int
    last_time: float

    def describe(self) -> str:
        (w, h), (sw, sh) = self.size, self.stream_size
        shape = ""
        if Fraction(w, h) != Fraction(sw, sh):
            shape = f", stretched from a {_shape(w, h)} to a {_shape(sw, sh)} picture"
        return (
            f"the picture size changes mid-stream: frames {self.first_frame}-{self.last_frame} "
            f"({self.first_time:.3f}s-{self.last_time:.3f}s) are {w}x{h}, scaled to {sw}x{sh} (the stream's first "
            f"size){shape}; restore that part on its own (--start/--duration) to keep its size"
        )


def _shape(width: int, height: int) -> str:
    ratio = Fraction(width, height)
    return f"{ratio.numerator}:{ratio.denominator}"


@dataclass
class ReadStats:
    frames: int = 0  # frames handed on (inside the range)
    decoded: int = 0  # every frame decoded, pre-roll from the seek point included
    damaged_packets: int = 0
    corrupt_frames: int = 0
    first_error: str | None = None
    repeated_timestamps: int = 0  # frames whose pts did not increase (duplicates, overlapping joins): left out
    repeated_sizes: dict[tuple[int, int], int] = field(default_factory=dict)  # of those, the ones of another size
    size_changes: list[SizeChange] = field(default_factory=list)  # runs of frames not at the stream's size
    truncated: str | None = None  # why the file looks cut short (its header promised more)
    decoder: str = "cpu"  # what decoded the video: cpu | nvdec (``io.hw_decode``)

    def warnings(self) -> list[str]:
        """What the run must say about the input even with -q (damaged packets are reported by the caller)."""
        out = []
        if self.truncated:
            out.append(f"the input looks truncated: {self.truncated}; the output ends where the input does")
        if self.corrupt_frames:
            out.append(f"{self.corrupt_frames} frame(s) decoded with damaged (concealed) macroblocks")
        if self.repeated_timestamps:
            sizes = ", ".join(f"{n} of {w}x{h}" for (w, h), n in sorted(self.repeated_sizes.items()))
            other = f" ({sizes}, not the stream's size: a recording of another size joined after it?)" if sizes else ""
            out.append(f"{self.repeated_timestamps} frame(s) repeated an earlier timestamp and were left out{other}")
        out.extend(change.describe() for change in self.size_changes)
        return out

    @property
    def damage_summary(self) -> str | None:
        """Damage ``--strict`` refuses: damaged packets, corrupt frames, a cut tail, a size change."""
        parts = []
        if self.damaged_packets:
            parts.append(f"{self.damaged_packets} damaged packet(s) ({self.first_error})")
        if self.corrupt_frames:
            parts.append(f"{self.corrupt_frames} frame(s) with damaged macroblocks")
        if self.truncated:
            parts.append(f"truncated ({self.truncated})")
        if self.size_changes:
            parts.append(f"picture size changes ({self.size_changes[0].describe()})")
        return "; ".join(parts) or None


@dataclass
class _Pass:
    """Where one pass over the file stands."""

    last_pts: int | None = None  # the last frame handed on
    video_done: bool = False  # the range's video is all decoded (side packets may still be due)


@dataclass(frozen=True)
class RangeMargins:
    """Seconds a range's reader decodes before its start and after its end: frames there are handed on with
    ``in_range`` False (the faces stage warms up and looks ahead on them; nothing of them is written)."""

    before: float = 0.0
    after: float = 0.0


class VideoReader:
    """Decodes ``info.video`` from ``path`` between ``start`` and ``start + duration`` (seconds), and ``margins``
    around them."""

    def __init__(
        self,
        path: str | Path,
        info: MediaInfo,
        config: ReaderConfig | None = None,
        start: float | None = None,
        duration: float | None = None,
        start_byte: int | None = None,
        margins: RangeMargins | None = None,
        hwaccel: HWAccel | None = None,
    ) -> None:
        """``hwaccel``: NVDEC (``io.hw_decode.choose_decode``), None: the CPU.

        ``start_byte``: where in the file the key frame at ``start`` begins (a batch segment's, from its plan):
        on a ``containers.BYTE_START_FORMATS`` file the reader opens the file ``light_open.BYTE_START_LEAD`` before
        it, and seeks instead where the streams there are not the probe's (``open_at_byte``) or the first frame
        decoded is not a key frame at or before the start (and at most ``read_start.BYTE_START_SLACK`` before it)."""
        self.path = Path(path)
        self.info = info
        self.config = config or ReaderConfig()
        margins = margins or RangeMargins()
        lead = None if start is None else max(start - margins.before, 0.0)  # 0: from the top, not sought
        decoded = None if duration is None else duration + margins.after + (0.0 if start is None else start - lead)
        self._start = StartFinder(self.path, info, lead, decoded, start_byte, hwaccel)
        try:
            self.container = self._start.open_file()
        except InputError as exc:
            if hwaccel is None:
                raise
            log.warning("NVDEC cannot open the file (%s): decoding on the CPU", exc)
            self._start = StartFinder(self.path, info, lead, decoded, start_byte)
            self.container = self._start.open_file()  # the file's own fault, if it is one, is raised here
        # --start and --duration count from the stream's own start (a TS at 10:00:00 is cut with --start 1)
        origin = info.video.start_time if start is not None else 0.0
        start = None if start is None else origin + start
        self.start = start
        self.end = None if duration is None else (start if start is not None else origin) + duration
        self._end_time = None if self.end is None else Fraction(self.end).limit_denominator(10**9)
        self._stop_time = None if self._end_time is None else self._end_time + Fraction(margins.after)
        self._side = SideRouter(start, self._end_time)
        self._take_streams()
        tb = self.video.time_base
        self._start_pts = None if start is None else int(Fraction(start).limit_denominator(10**9) / tb)
        self._lead_pts = None if lead is None else int(Fraction(origin + lead).limit_denominator(10**9) / tb)
        self.offset: Fraction | None = None if start is not None else Fraction(0)
        self.stats = ReadStats(decoder=self._decoder())
        self._size: tuple[int, int] | None = None

    def _take_streams(self) -> None:
        self.video = self.container.streams[self.info.video.index]
        self.video.thread_type = "AUTO"
        if self.config.threads:
            self.video.codec_context.thread_count = self.config.threads
        # every other stream: audio, subtitles, data, attachments, extra video (cover art, a second angle)
        self.side_streams = [s for s in self.container.streams if s.index != self.video.index]
        if self._side.diverted:  # a segment's side file holds only what assembly muxes
            self.side_streams = [s for s in self.side_streams if s.type in ASSEMBLED_SIDE_TYPES]

    def _decoder(self) -> str:
        """nvdec where the video's decoder took NVDEC on, else cpu."""
        return "nvdec" if self.video.codec_context.is_hwaccel else "cpu"

    @property
    def opened_at_byte(self) -> int | None:
        """The key frame's byte position the file is read from (from ``BYTE_START_LEAD`` before it: ``start_byte``),
        or None: read from its start and sought, or not a ``BYTE_START_FORMATS`` file."""
        return self._start.opened_at_byte

    # -- packets of the other streams -------------------------------------------------------------
    def take_packets(self) -> list[av.Packet]:
        """Side-stream packets demuxed since the last call, in file order, inside the processed range."""
        return self._side.take()

    def packet_range(self) -> PacketRange:
        """The side-packet range of this run (valid once the first frame has been read)."""
        return self._side.packet_range(self.offset)

    def divert_side_packets(self, path: Path, emit_start: int, emit_end: int | None) -> None:
        """A batch segment's run: the side packets with a time from ``emit_start`` up to ``emit_end`` (video
        pts; the first segment's window, starting at the stream's first frame, owns what precedes it too) go
        to the side file ``path``, written when the pass has read them all, instead of to ``take_packets``.
        Windows that tile the video tile the side packets: each is kept by exactly one segment."""
        tb = self.video.time_base
        rate = self.info.video.frame_rate or 25
        first = emit_start * tb <= Fraction(self.info.video.start_time).limit_denominator(10**9) + 1 / (2 * rate)
        self.side_streams = [s for s in self.side_streams if s.type in ASSEMBLED_SIDE_TYPES]
        start = None if first else emit_start * tb
        end = None if emit_end is None else emit_end * tb
        self._side.divert(path, start, end, self.side_streams)

    # -- frames -----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self) -> Iterator[Frame]:
        """The range's frames, from a pass the start finder started; again from its next start where one missed."""
        check = self._start.first(self, self._lead_pts)
        while True:
            try:
                yield from self._pass(check)
                return
            except StartMissed as missed:
                check = self._start.after_miss(self, missed)

    def rewind(self, reopen: bool) -> None:
        """Forget a pass whose start missed; ``reopen`` to decode from the top."""
        if reopen:
            self.container.close()
            self.container = self._start.open_file()
            self._take_streams()
        self._side.forget_pass()
        self.offset = None
        self._size = None
        self.stats = ReadStats(decoder=self._decoder())

    def _pass(self, check: StartCheck) -> Iterator[Frame]:
        """One pass over the file from where its start left it. Raises ``StartMissed`` (before yielding anything)
        where its first frames do not show what ``check`` asks."""
        watch = StartWatch(check)
        run = _Pass()
        for packet in self._demuxed():
            if packet.stream.index != self.video.index:
                self._side.route(packet, self.offset)
                if run.video_done and self._side.past_end(packet, self.side_streams):
                    break
                continue
            if run.video_done:
                continue
            if packet.is_corrupt:
                self._damaged("corrupt packet")
            watch.packet(packet)
            yield from self._decoded(packet, watch, run)
            if run.video_done and not self.side_streams:
                break
        watch.finish()
        self._finish_pass(run)

    def _demuxed(self) -> Iterator[av.Packet]:
        """The video's and side streams' packets in file order, up to the end or the first demux error."""
        demux = self.container.demux(self.video, *self.side_streams)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:  # damaged or truncated container: stop here
                self._damaged(f"demuxing stopped: {ffmpeg_reason(exc)}")
                return
            yield packet

    def _decoded(self, packet: av.Packet, watch: StartWatch, run: _Pass) -> Iterator[Frame]:
        """The frames of one video packet that the range keeps."""
        for frame in self._decode(packet):
            self.stats.decoded += 1
            pts = frame.pts
            if pts is None:
                pts = (run.last_pts + 1) if run.last_pts is not None else 0
            watch.frame(pts, frame.key_frame)
            if not self._keeps(pts, run):
                if run.video_done:
                    break
                self._note_repeat_size(frame, pts, run)
                continue
            if self.stats.decoder == "nvdec":  # NVDEC's NV12 / P010 back in the stream's format, as the CPU gives it
                frame = to_stream_format(frame, self.info.video.colour.pix_fmt)
            frame = self._fit_size(frame, pts)
            in_range = self.in_range(pts)
            if self.offset is None and in_range:
                self.offset = Fraction(pts) * self.video.time_base
                self._side.release_early(self.offset)
            run.last_pts = pts
            if frame.is_corrupt:
                self.stats.corrupt_frames += 1
            yield Frame(self.stats.frames, pts, self.video.time_base, frame, in_range)
            self.stats.frames += 1

    def in_range(self, pts: int) -> bool:
        """Whether the frame at ``pts`` is in the range itself (not in its margins)."""
        if self._start_pts is not None and pts < self._start_pts:
            return False
        return self._end_time is None or pts * self.video.time_base < self._end_time

    def _keeps(self, pts: int, run: _Pass) -> bool:
        """Whether the frame at ``pts`` is handed on: not a repeated time, inside the range or its margins (past
        them, the pass's video is done)."""
        if run.last_pts is not None and pts <= run.last_pts:
            self.stats.repeated_timestamps += 1
            log.debug("%s: frame with non-increasing pts %s left out", self.path, pts)
            return False
        if self._lead_pts is not None and pts < self._lead_pts:
            return False
        if self._stop_time is not None and pts * self.video.time_base >= self._stop_time:
            run.video_done = True
            return False
        return True

    def _finish_pass(self, run: _Pass) -> None:
        """A pass read to its end: the range's offset, a cut tail, ``--strict``, the side file kept."""
        if self.offset is None:
            self.offset = Fraction(0)
            self._side.release_early(self.offset)
        if not run.video_done and self._end_time is None and self.start is None:
            self.stats.truncated = truncation(self.container, self.video, run.last_pts, self.stats.frames) or (
                cut_tail(self.path, self.info.format_name)
                if self.info.format_name.startswith(PTS_DURATION_FORMATS)
                else None
            )
        damage = self.stats.damage_summary
        if damage and self.config.strict:
            raise DamagedInputError(f"{self.path}: {damage}; run without --strict to restore what can be decoded")
        self._side.commit()  # every side packet of the range is in

    def _note_repeat_size(self, frame: av.VideoFrame, pts: int, run: _Pass) -> None:
        size = (frame.width, frame.height)
        repeated = run.last_pts is not None and pts <= run.last_pts
        if repeated and size != (self.info.video.width, self.info.video.height):
            self.stats.repeated_sizes[size] = self.stats.repeated_sizes.get(size, 0) + 1

    def _fit_size(self, frame: av.VideoFrame, pts: int) -> av.VideoFrame:
        """``frame`` at the stream's size: a picture of another size is scaled to it (every stage and the writer see
        one size), and the run of such frames is noted (frame numbers, times, sizes) for the run's warnings."""
        want = (self.info.video.width, self.info.video.height)
        size = (frame.width, frame.height)
        if size == want:
            self._size = None
            return frame
        index, time = self.stats.frames, float(pts * self.video.time_base)
        changes = self.stats.size_changes
        if self._size == size and changes:
            changes[-1].last_frame, changes[-1].last_time = index, time
        else:
            changes.append(SizeChange(size, want, index, time, index, time))
            self._size = size
        return frame.reformat(width=want[0], height=want[1])

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            return packet.decode()
        except av.error.FFmpegError as exc:
            self._damaged(ffmpeg_reason(exc))
            return []

    def _damaged(self, reason: str) -> None:
        self.stats.damaged_packets += 1
        if self.stats.first_error is None:
            self.stats.first_error = reason
        log.debug("%s: damaged input: %s", self.path, reason)

    def close(self) -> None:
        self._side.abort()  # a pass that did not finish (a committed file stays)
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncation(
    container: av.container.InputContainer, stream: av.VideoStream, last_pts: int | None, frames: int
) -> str | None:
    """Why a file that decoded to its end looks cut short, or None: the header or index promised more.

    Matroska and MP4 write the duration (and MP4 the sample count) in their header; a tail cut between
    packets leaves those promises unkept. A stream without such a header (TS, PS) shows a cut in its last bytes
    (``io.cut_tail``), or, with B-frames, in a frame count short of its estimated duration.
    """
    if last_pts is None:
        return None
    tb = stream.time_base
    last = last_pts * tb
    declared = int(stream.frames or 0)
    if declared and frames + 1 < declared and container.format.name.startswith("mov"):
        return f"{frames} of the {declared} frames its index lists"
    ends = []
    if stream.duration and stream.start_time is not None:
        ends.append((stream.start_time + stream.duration) * tb)
    if container.duration and not container.format.name.startswith(PTS_DURATION_FORMATS):
        start = Fraction(container.start_time or 0, av.time_base)
        ends.append(start + Fraction(container.duration, av.time_base))
    if not ends:
        return None
    rate = stream.average_rate or stream.guessed_rate or 25
    slack = 2 / Fraction(rate)  # the last frame's own duration, and rounding
    end = max(ends)
    if end - last > slack + Fraction(1, 20):
        return f"it ends at {float(last):.3f}s where its header says {float(end):.3f}s"
    first = Fraction(stream.start_time or 0) * tb if stream.start_time is not None else Fraction(0)
    expected = round((end - first) * Fraction(rate))
    if not _is_vfr(stream) and frames + 1 < expected:  # packets cut from the decode-order tail (B-frames)
        return f"{frames} frames where its header's duration holds {expected}"
    return None


def _is_vfr(stream: av.VideoStream) -> bool:
    avg, base = stream.average_rate, stream.base_rate or stream.guessed_rate
    return bool(avg and base and abs(Fraction(avg) - Fraction(base)) > Fraction(1, 100) * Fraction(base))
