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
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.errors import OutputError, VerificationError

log = logging.getLogger(__name__)


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
    path: Path, expected_pts: list[int], time_base: Fraction, side_starts: dict[int, Fraction] | None = None
) -> None:
    """Check the written file holds exactly the expected frames at the expected times, in order.

    The output's video is decoded and each frame's timestamp, in presentation order as decoded (never
    sorted), is compared with the one the writer encoded, in seconds, allowing half a tick of the
    coarser time base (muxers may change it). A whole-file shift is allowed only where the muxer
    made one and the other streams moved with it (``side_starts``: output stream index -> the time
    its first packet was written, seconds). A video-only file (``side_starts`` empty) may shift as a
    whole; a caller that cannot say (``None``) gets the old half-second allowance.
    """
    written = _read_back(path, side_starts)
    out_pts, out_tb = written.pts, written.time_base
    if side_starts is None:
        # callers from before issue 12 (jobs/assemble.py, jobs/runner.py) hand their packets' pts in decode
        # order; presentation order is then increasing time. The output's own order is never sorted.
        expected_pts = sorted(expected_pts)
    if len(out_pts) != len(expected_pts):
        raise VerificationError(
            f"the output has {len(out_pts)} frames where {len(expected_pts)} were written; it was not kept"
        )
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
    """What a written file holds: its video's timestamps in the order decoded, and its side streams' starts."""

    pts: list[int]
    time_base: Fraction
    side_starts: dict[int, Fraction]  # output stream index -> its first packet's time (seconds)


def _read_back(path: Path, side_starts: dict[int, Fraction] | None) -> _ReadBack:
    """The written file's video decoded (and, where ``side_starts`` names streams, their first packets found)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            out_tb = stream.time_base
            out_pts = []
            for frame in container.decode(stream):
                ts = frame.pts if frame.pts is not None else frame.dts
                if ts is not None:
                    out_pts.append(ts)
            starts = _first_packet_times(path, side_starts) if side_starts else {}
            return _ReadBack(out_pts, out_tb, starts)
    except av.error.FFmpegError as exc:
        raise VerificationError(f"{path.name}: the written file cannot be read back ({exc}); it was not kept") from exc


def _first_packet_times(path: Path, streams: dict[int, Fraction]) -> dict[int, Fraction]:
    """The time (seconds) of the first packet of each of ``streams`` in the file at ``path``."""
    starts: dict[int, Fraction] = {}
    with av.open(str(path)) as again:
        wanted = [s for s in again.streams if s.index in streams]
        for packet in again.demux(*wanted):
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None and packet.stream.index not in starts:
                starts[packet.stream.index] = ts * packet.time_base
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
