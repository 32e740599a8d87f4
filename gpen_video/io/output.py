"""Nothing half-written at the output path, nothing overwritten by surprise, the input never touched.

The output is written under a temporary name in the destination folder (same file system, so the
final rename is atomic), checked against what was read, and only then renamed into place. Any
error or Ctrl-C removes the temporary file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


def temporary_path(output_path: Path) -> Path:
    """A hidden sibling of the output with the same extension (so the muxer is chosen the same way)."""
    return output_path.with_name(f".{output_path.stem}.partial-{os.getpid()}{output_path.suffix}")


@contextmanager
def atomic_output(output_path: Path) -> Iterator[Path]:
    """Yield a temporary path; rename it onto ``output_path`` only if the block completes."""
    temp = temporary_path(output_path)
    try:
        yield temp
    except BaseException:
        _remove(temp)
        raise
    else:
        try:
            with open(temp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, output_path)
        except OSError as exc:
            _remove(temp)
            raise OutputError(f"{output_path}: cannot move the finished file into place ({exc})") from exc


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - best effort cleanup
        log.warning("could not remove temporary file %s: %s", path, exc)


def verify_video(path: Path, expected_pts: list[int], time_base: Fraction) -> None:
    """Check the written file holds exactly the expected frames at the expected times.

    Compares the sorted packet timestamps of the output's video stream with those the writer
    encoded, in seconds, allowing half a tick of the coarser time base (muxers may change it).
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            out_tb = stream.time_base
            out_pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size)
    except av.error.FFmpegError as exc:
        raise VerificationError(f"{path.name}: the written file cannot be read back ({exc}); it was not kept") from exc
    if len(out_pts) != len(expected_pts):
        raise VerificationError(
            f"the output has {len(out_pts)} frames where {len(expected_pts)} were written; it was not kept"
        )
    tolerance = max(Fraction(out_tb), Fraction(time_base)) / 2
    first_out = out_pts[0] * out_tb if out_pts else Fraction(0)
    first_in = min(expected_pts) * time_base if expected_pts else Fraction(0)
    # A muxer may shift the whole timeline (e.g. an MP4 edit list starting at 0): compare relative times.
    shift = first_out - first_in
    if abs(shift) > Fraction(1, 2):
        raise VerificationError(f"the output's timeline starts {float(shift):+.3f}s off the input's; it was not kept")
    for i, (o, e) in enumerate(zip(out_pts, sorted(expected_pts), strict=True)):
        if abs((o * out_tb - shift) - e * time_base) > tolerance:
            raise VerificationError(
                f"frame {i}: output timestamp {float(o * out_tb):.6f}s differs from the input's "
                f"{float(e * time_base):.6f}s; the output was not kept"
            )
