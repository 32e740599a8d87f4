"""Nothing half-written at the output path, nothing overwritten by surprise, the input never touched.

The output is written under a temporary name in the destination folder (same file system, so the
final rename is atomic), checked against what was read, and only then moved into place with a
rename that never replaces a file that appeared meanwhile (``renameat2(RENAME_NOREPLACE)``, else a
hard link then unlink), so two runs to one output cannot both succeed. Any error, Ctrl-C, SIGTERM or
SIGHUP removes the temporary file; partials a killed run left behind are removed by the next run to
the same output.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import itertools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.errors import OutputError, VerificationError
from gpen_video.io.matroska_blocks import read_blocks

log = logging.getLogger(__name__)

# containers whose header lists every sample with its time, size and place (PyAV's index_entries)
SAMPLE_TABLE_FORMATS = ("mov",)


def default_output_path(input_path: Path, suffix: str = "restored") -> Path:
    """``reel.mov`` -> ``reel.restored.mov`` beside the input."""
    return input_path.with_name(f"{input_path.stem}.{suffix}{input_path.suffix}")


def check_output_path(input_path: Path, output_path: Path, overwrite: bool) -> None:
    """Refuse an output that is the input, exists (without overwrite), or cannot be created."""
    if output_path.exists() and input_path.exists() and os.path.samefile(output_path, input_path):
        raise OutputError(f"{output_path}: the output is the input file; choose another name with -o")
    if output_path.resolve() == input_path.resolve():
        raise OutputError(f"{output_path}: the output is the input file; choose another name with -o")
    if output_path.is_dir():
        raise OutputError(f"{output_path}: is a folder; give a file name with -o")
    if output_path.exists() and not overwrite:
        raise OutputError(f"{output_path}: already exists; pass --overwrite to replace it")
    folder = output_path.parent
    if not folder.is_dir():
        raise OutputError(f"{output_path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{output_path}: cannot write in {folder} (permission denied)")
    if not output_path.suffix:
        raise OutputError(f"{output_path}: give the output a file extension (.mp4, .mov, .mkv, ...)")


PARTIAL_MARK = ".partial-"  # in the name of every temporary file written here (a crash may leave one)


def temporary_path(output_path: Path) -> Path:
    """A hidden sibling of the output with the same extension (so the muxer is chosen the same way)."""
    return output_path.with_name(f".{output_path.stem}.partial-{os.getpid()}{output_path.suffix}")


def stale_partials(output_path: Path) -> list[Path]:
    """Temporary files of earlier runs to ``output_path`` whose process is gone (killed, crashed, power cut)."""
    prefix = f".{output_path.stem}.partial-"
    stale = []
    for candidate in output_path.parent.glob(f"{prefix}*{output_path.suffix}"):
        pid_text = candidate.name[len(prefix) :].removesuffix(output_path.suffix).split(".")[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _process_alive(int(pid_text)):
            stale.append(candidate)
    return stale


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(output_path: Path) -> list[Path]:
    removed = []
    for stale in stale_partials(output_path):
        _remove(stale)
        log.warning("removed %s, left by an earlier run to %s that did not finish", stale.name, output_path.name)
        removed.append(stale)
    return removed


def check_writable(path: Path, what: str = "report") -> None:
    """OutputError unless ``path`` can be created (its folder exists and is writable); checked before the run."""
    folder = path.parent
    if path.is_dir():
        raise OutputError(f"{path}: the {what} path is a folder; give a file name")
    if not folder.is_dir():
        raise OutputError(f"{path}: the folder {folder} of the {what} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"{path}: cannot write the {what} there (permission denied)")


@contextmanager
def atomic_output(output_path: Path) -> Iterator[Path]:
    """Yield a temporary path; move it onto ``output_path`` only if the block completes."""
    remove_stale_partials(output_path)
    temp = temporary_path(output_path)
    # an output already there was accepted by check_output_path (--overwrite): only that very file may go
    before = _identity(output_path)
    try:
        yield temp
    except OSError as exc:
        _remove(temp)
        if exc.errno == errno.ENOSPC:
            raise OutputError(f"{output_path.parent}: the disk is full; nothing was written") from exc
        raise
    except BaseException:
        _remove(temp)
        raise
    else:
        try:
            with open(temp, "rb") as handle:
                os.fsync(handle.fileno())
            if before is not None and _identity(output_path) == before:
                output_path.unlink()
            _rename_into_place(temp, output_path)
        except FileExistsError as exc:
            _remove(temp)
            raise OutputError(
                f"{output_path}: a file appeared there during the run (another run?); it was not replaced"
            ) from exc
        except OSError as exc:
            _remove(temp)
            raise OutputError(f"{output_path}: cannot move the finished file into place ({exc})") from exc


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


def _rename_into_place(temp: Path, output_path: Path, replace: bool = False) -> None:
    """``temp`` -> ``output_path``; FileExistsError when something is already there (unless ``replace``).

    ``--overwrite`` removes the old output first (``check_output_path`` already saw it), then moves
    without replacing, so a file that appears in between is still never clobbered.
    """
    if replace:
        os.replace(temp, output_path)
        return
    if _renameat2_noreplace(temp, output_path):
        return
    os.link(temp, output_path)  # fails with FileExistsError when the name is taken
    os.unlink(temp)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _renameat2_noreplace(src: Path, dst: Path) -> bool:
    """renameat2(RENAME_NOREPLACE) through libc; False when the system or file system has none."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), str(dst))
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def atomic_write_bytes(path: Path, data: bytes, replace: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary sibling, fsync, rename, fsync of the folder (so a crash leaves
    the old file or the new one, never a torn one); ``replace=False``: never clobber a file already there."""
    temp = path.with_name(f".{path.name}{PARTIAL_MARK}{os.getpid()}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _rename_into_place(temp, path, replace=replace)
        fsync_dir(path.parent)
    except OSError as exc:
        _remove(temp)
        if exc.errno == errno.ENOSPC:
            raise OutputError(f"{path.parent}: the disk is full; {path.name} was not written") from exc
        if isinstance(exc, FileExistsError):
            raise OutputError(f"{path}: already exists; it was not replaced") from exc
        raise OutputError(f"{path}: cannot be written ({exc.strerror or exc})") from exc


def atomic_write_text(path: Path, text: str, replace: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), replace=replace)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - best effort cleanup
        log.warning("could not remove temporary file %s: %s", path, exc)


def verify_video(
    path: Path,
    expected_pts: list[int],
    time_base: Fraction,
    side_starts: dict[int, Fraction] | None = None,
    sizes: list[int] | None = None,
) -> None:
    """Check the written file holds exactly the expected frames at the expected times, in order.

    The output's video packets are read, not decoded (``_read_back``): their pts, sorted, are the presentation
    times, compared with the ones the writer encoded, in seconds, allowing half a tick of the coarser time base
    (muxers may change it). Decoding is kept where it is the proof: the first and the last GOP are decoded, and
    must give every frame of their packets, in presentation order. A whole-file shift is allowed only where the
    muxer made one and the other streams moved with it (``side_starts``: output stream index -> the time its
    first packet was written, seconds). A video-only file (``side_starts`` empty) may shift as a whole; a caller
    that cannot say (``None``) gets the old half-second allowance. ``sizes``: the video packets' sizes as muxed,
    in decode order (a stream copy knows them); the file's own must be the same.
    """
    written = _read_back(path, side_starts)
    out_pts, out_tb = written.pts, written.time_base
    if side_starts is None:
        # callers from before issue 12 (jobs/assemble.py, jobs/runner.py) hand their packets' pts in decode
        # order; presentation order is then increasing time.
        expected_pts = sorted(expected_pts)
    if len(out_pts) != len(expected_pts):
        raise VerificationError(
            f"the output has {len(out_pts)} frames where {len(expected_pts)} were written; it was not kept"
        )
    if sizes is not None and written.sizes != sizes:
        at = next((i for i, (a, b) in enumerate(zip(written.sizes, sizes, strict=False)) if a != b), len(sizes))
        raise VerificationError(f"packet {at} of the output's video is not the size it was written at; "
                                "it was not kept")  # fmt: skip
    lost = sorted(set(side_starts or {}) - set(written.side_starts))
    if lost:
        raise VerificationError(f"stream(s) #{', #'.join(map(str, lost))} were written but the output has no packet "
                                "of them; it was not kept")  # fmt: skip
    if not out_pts:
        return
    tolerance = max(Fraction(out_tb), Fraction(time_base)) / 2
    shift = out_pts[0] * out_tb - expected_pts[0] * time_base
    if abs(shift) > tolerance:
        _check_shift(shift, side_starts, written.side_starts)
    for i, (o, e) in enumerate(zip(out_pts, expected_pts, strict=True)):
        if abs((o * out_tb - shift) - e * time_base) > tolerance:
            raise VerificationError(
                f"frame {i}: output timestamp {float(o * out_tb - shift):.6f}s differs from the input's "
                f"{float(e * time_base):.6f}s (presentation order); the output was not kept"
            )


@dataclass(frozen=True)
class _ReadBack:
    """What a written file holds: its video's presentation times (sorted packet pts), its packets' sizes (decode
    order), its side streams' starts, and how it was read (``index``: the sample table; ``blocks``: Matroska's block
    headers; ``packets``: a demux)."""

    pts: list[int]
    time_base: Fraction
    side_starts: dict[int, Fraction]  # output stream index -> its first packet's time (seconds)
    sizes: list[int]
    how: str


class VideoPackets:
    """A video stream's packets as they go by, in decode order: their pts, sizes and key frames, checked to be
    whole (no corrupt flag) with increasing dts; the first GOP and the last two kept, so both ends can be decoded
    (``check_ends``) without reading the file again. ``name``: the file, for messages."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pts: list[int] = []
        self.sizes: list[int] = []
        self.head: list[av.Packet] = []  # the first GOP
        self.tail: list[list[av.Packet]] = []  # the last two GOPs
        self._last_dts: int | None = None

    def add(self, packet: av.Packet) -> None:
        if packet.is_corrupt:
            raise VerificationError(f"{self.name}: video packet {len(self.pts)} is damaged; it was not kept")
        if packet.dts is not None and self._last_dts is not None and packet.dts <= self._last_dts:
            raise VerificationError(f"{self.name}: video packet {len(self.pts)} goes back in time; it was not kept")
        self._last_dts = packet.dts if packet.dts is not None else self._last_dts
        self.pts.append(packet.pts)
        self.sizes.append(packet.size)
        if packet.is_keyframe or not self.tail:
            self.tail = [*self.tail[-1:], []]
        if len(self.tail) == 1:
            self.head.append(packet)
        self.tail[-1].append(packet)

    def check_ends(self, decoder: av.codec.context.CodecContext) -> None:
        """Decode the first GOP and the last (from the GOP before it, for pictures that lean on it): each must give
        a frame for each of its packets, in presentation order. Where the first GOP is the one the last is decoded
        from (one or two GOPs read), the two are decoded once, together: each picture is decoded once, not twice."""
        if not self.pts:
            return
        decoder.thread_type = "AUTO"  # frame threads: the same pictures in a fraction of the wall time
        tail = [p for gop in self.tail for p in gop]
        if tail[0] is self.head[0]:  # the first GOP leads the last (a short clip: two GOPs at most): decoded once
            _check_decoded(self.name, "first and last GOP", decoder, tail, tail)
            return
        _check_decoded(self.name, "first GOP", decoder, self.head, self.head)
        decoder.flush_buffers()
        _check_decoded(self.name, "last GOP", decoder, tail, self.tail[-1])


def _check_decoded(
    name: str, which: str, decoder: av.codec.context.CodecContext, packets: list[av.Packet], must: list[av.Packet]
) -> None:
    """``packets`` decoded must give frames in increasing pts, one for each of ``must`` and none but theirs."""
    shown: list[int] = []
    try:
        for packet in [*packets, None]:
            for frame in decoder.decode(packet):
                if frame.is_corrupt:
                    raise VerificationError(f"{name}: the {which} decodes damaged; it was not kept")
                shown.append(frame.pts)
    except av.error.FFmpegError as exc:
        raise VerificationError(f"{name}: the {which} does not decode ({exc}); it was not kept") from exc
    times = {p.pts for p in packets}
    wanted = {p.pts for p in must}
    if any(b <= a for a, b in itertools.pairwise(shown)) or not wanted <= set(shown) <= times:
        raise VerificationError(
            f"{name}: the {which} decodes to {len(shown)} frames out of {len(packets)} packets or out of "
            "presentation order; it was not kept"
        )


def _read_back(path: Path, side_starts: dict[int, Fraction] | None) -> _ReadBack:
    """The written file's video packets (from its sample table where it has one for an intra stream, else read
    through; both ends decoded either way), and where ``side_starts`` names streams, their first packets."""
    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams.video if s.codec_context is not None), None)
            if stream is None or stream.codec_context.codec is None:
                raise VerificationError(f"{path.name}: the written file holds no readable video; it was not kept")
            wanted = [s for s in container.streams if side_starts and s.index in side_starts]
            indexed = _from_sample_table(container, stream, path) or _from_matroska_blocks(container, stream, path)
            if indexed is not None:
                if indexed.how == "blocks":
                    starts = {s.index: indexed.side_starts[s.index] for s in wanted if s.index in indexed.side_starts}
                else:
                    starts = _first_packet_times(container, wanted, discard=stream) if wanted else {}
                return replace(indexed, side_starts=starts)
            video = VideoPackets(path.name)
            starts: dict[int, Fraction] = {}
            for packet in container.demux(stream, *wanted):
                if packet.stream.index != stream.index:
                    _note_start(starts, packet)
                elif packet.size and packet.pts is not None:
                    video.add(packet)
            video.check_ends(stream.codec_context)
            return _ReadBack(sorted(video.pts), stream.time_base, starts, video.sizes, "packets")
    except av.error.FFmpegError as exc:
        raise VerificationError(f"{path.name}: the written file cannot be read back ({exc}); it was not kept") from exc


def _note_start(starts: dict[int, Fraction], packet: av.Packet) -> None:
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is not None and packet.stream.index not in starts:
        starts[packet.stream.index] = ts * packet.time_base


def _from_matroska_blocks(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> _ReadBack | None:
    """A Matroska file's video blocks, from their headers (``io.matroska_blocks``: a few bytes a frame); the first
    GOP and the last two demuxed, checked against the headers and decoded. None where the headers cannot stand
    for a demux (not Matroska, laced or header-stripped frames, streams other than the tracks, under three GOPs)."""
    if container.format.name.split(",")[0] not in ("matroska", "webm"):
        return None
    blocks = read_blocks(path)
    if blocks is None or len(blocks.track_numbers) != len(container.streams) or blocks.time_base != stream.time_base:
        return None
    track = blocks.tracks.get(blocks.track_numbers[stream.index])
    if track is None:
        return None
    keys = [i for i, key in enumerate(track.keys) if key]
    if len(keys) < 3 or keys[0] != 0:
        return None
    video = VideoPackets(path.name)
    packets = (p for p in container.demux(stream) if p.size and p.pts is not None)
    for packet in itertools.islice(packets, keys[1]):
        video.add(packet)
    container.seek(track.pts[keys[-2]], stream=stream, backward=True, any_frame=False)
    tail = [p for p in container.demux(stream) if p.size and p.pts is not None and p.pts >= track.pts[keys[-2]]]
    for packet in tail:
        video.add(packet)
    read = [(p.pts, p.size) for gop in (video.head, *video.tail) for p in gop]
    listed = [*zip(track.pts[: keys[1]], track.sizes[: keys[1]], strict=True),
              *zip(track.pts[keys[-2] :], track.sizes[keys[-2] :], strict=True)]  # fmt: skip
    # the demuxer may give a frame back a header Matroska stores without (ProRes: 8 bytes): the same for every frame
    added = {r[1] - b[1] for r, b in zip(read, listed, strict=False)}
    if len(read) != len(listed) or [r[0] for r in read] != [b[0] for b in listed] or len(added) != 1:
        return _given_up(container)  # the headers do not stand for the demux here: it is read through
    video.check_ends(stream.codec_context)
    extra = added.pop()
    sizes = [size + extra for size in track.sizes]
    starts = {}
    for s in container.streams:
        blocks_of = blocks.tracks.get(blocks.track_numbers[s.index])
        if s.index != stream.index and blocks_of is not None and blocks_of.pts:
            starts[s.index] = blocks_of.pts[0] * blocks.time_base
    return _ReadBack(sorted(track.pts), stream.time_base, starts, sizes, "blocks")


def _given_up(container: av.container.InputContainer) -> None:
    """An index reader that demuxed and then gave up: the file back at its start, so the read-through that follows
    sees every packet."""
    container.seek(0)


def _from_sample_table(container: av.container.InputContainer, stream: av.VideoStream, path: Path) -> _ReadBack | None:
    """A stream whose codec never reorders frames, in a container with a sample table (MOV/MP4): its samples' times
    and sizes, with nothing read but the header, the first frame and the last GOP, which are decoded; None where it
    has no such table, or its frames may be shown out of decode order (the table holds decode times: the packets
    are read then)."""
    if container.format.name.split(",")[0] not in SAMPLE_TABLE_FORMATS or stream.codec_context.codec.reorder:
        return None
    entries = [e for e in stream.index_entries if not e.is_discard and e.size > 0]
    pts = [e.timestamp for e in entries]
    keys = [e.timestamp for e in entries if e.is_keyframe]
    if len(keys) < 2 or any(b <= a for a, b in itertools.pairwise(pts)):  # one GOP: the whole file is its last
        return None
    size = path.stat().st_size
    if any(e.pos + e.size > size for e in entries):
        lost = sum(e.pos + e.size > size for e in entries)
        raise VerificationError(f"{path.name}: {lost} frame(s) listed past the end of the file; it was not kept")
    first = next((p for p in container.demux(stream) if p.size), None)
    if first is None or first.pts != first.dts or first.pts != entries[0].timestamp:
        return _given_up(container)
    video = VideoPackets(path.name)
    video.add(first)
    container.seek(keys[-1], stream=stream, backward=True, any_frame=False)
    for packet in container.demux(stream):
        if packet.size and packet.pts is not None and packet.pts >= keys[-1]:
            video.add(packet)
    if video.pts[1:] != [t for t in pts if t >= keys[-1]]:
        raise VerificationError(f"{path.name}: its last GOP cannot be read where its index says; it was not kept")
    video.check_ends(stream.codec_context)
    return _ReadBack(pts, stream.time_base, {}, [e.size for e in entries], "index")


def _first_packet_times(
    container: av.container.InputContainer, wanted: list[av.stream.Stream], discard: av.stream.Stream
) -> dict[int, Fraction]:
    """The time (seconds) of the first packet of each of ``wanted``; ``discard``'s packets are skipped, not read
    (a container with a sample table seeks past them)."""
    container.seek(0)
    discard.discard = av.stream.Discard.all
    starts: dict[int, Fraction] = {}
    for packet in container.demux(*wanted):
        _note_start(starts, packet)
        if len(starts) == len(wanted):
            break
    return starts


def _check_shift(shift: Fraction, side_starts: dict[int, Fraction] | None, starts: dict[int, Fraction]) -> None:
    """A whole-file ``shift`` of the video (past the tolerance) is the muxer's only where the other streams moved
    with it (``starts``: where they are now); a video-only file may shift; a caller that does not say, by half a
    second at most."""
    if side_starts is None:  # callers that do not say: a muxer's priming shift only
        if abs(shift) > Fraction(1, 2):
            raise VerificationError(
                f"the output's timeline starts {float(shift):+.3f}s off the input's; it was not kept"
            )
    elif side_starts:  # other streams: they must have moved with the video
        moved = [starts[i] - t for i, t in side_starts.items() if i in starts]
        if not moved or any(abs(m - shift) > Fraction(1, 50) for m in moved):
            raise VerificationError(
                f"the output's video starts {float(shift):+.3f}s off the input's"
                + (" and the other streams did not move with it" if moved else "")
                + "; it was not kept"
            )
