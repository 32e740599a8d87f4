"""The last step of a run into a video file: composed frames to the writer, with the side packets due by each
frame's time merged in, then close and verify. A video (``pipeline``) and an image sequence with ``--audio``
(``sequence_restore``) share it, so the two cannot drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av

from gpen_video.align.records import Composed
from gpen_video.io.output import verify_video
from gpen_video.io.writer import Writer, WriteResult
from gpen_video.report import StageTimes


class PacketSource(Protocol):
    """Side packets by time: ``side_packets.SidePackets`` (a video's own streams) or an ``--audio`` file."""

    def due(self, until: Fraction) -> list[av.Packet]: ...

    def rest(self) -> list[av.Packet]: ...


def encode_frames(
    items: Iterable[Composed],
    writer: Writer,
    side: PacketSource,
    temp: Path,
    times: StageTimes,
    progress: Callable[[int], None] | None = None,
) -> WriteResult:
    """Write every emitted frame at its ``pts`` and the side packets due before it; close ``writer`` and check
    the file at ``temp`` (frame count, per-frame timestamps, side stream starts) against what was written.

    Any failure (Ctrl-C too) aborts the writer (the caller's ``atomic_output`` removes ``temp``) and closes
    ``items`` at once, so the stage threads behind it stop before the caller closes the reader they decode
    from (held by this frame's traceback, an open generator would outlive the reader: a crash at exit).
    """
    frames = iter(items)
    try:
        written = 0
        for item in frames:
            t0 = time.perf_counter()
            writer.write_packets(side.due(item.frame.pts * item.frame.time_base))
            if item.emit:
                writer.write(item.output, item.frame.pts)
                written += 1
            times.add("encode", time.perf_counter() - t0)
            if progress:
                progress(written)
        t0 = time.perf_counter()
        writer.write_packets(side.rest())
        result = writer.close()
        times.add("encode", time.perf_counter() - t0)
    except BaseException:
        writer.abort()
        if isinstance(frames, Generator):
            frames.close()
        raise
    t0 = time.perf_counter()
    verify_video(temp, result.pts, result.time_base, result.side_starts)
    times.add("verify", time.perf_counter() - t0)
    return result
