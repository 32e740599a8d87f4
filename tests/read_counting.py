"""Count what the code under test reads from a file: every ``av.open`` of it goes through a counting file object.

The truth about where each frame's bytes lie comes from the ffprobe CLI, not from the code under test.
"""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
from conformance_cases import ffmpeg_exe, ffprobe_exe, ffprobe_json

FFMPEG = ffmpeg_exe()
FFPROBE = ffprobe_exe() or "ffprobe"


class CountingFile(io.RawIOBase):
    """A read-only file that records every (offset, length) read through it."""

    def __init__(self, path: Path, reads: list[tuple[int, int]]) -> None:
        self._file = io.FileIO(path, "r")  # not open(): counting_reads may stand in for it
        self.reads = reads

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        offset = self._file.tell()
        n = self._file.readinto(buffer)
        if n:
            self.reads.append((offset, n))
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        super().close()


@dataclass
class ReadLog:
    path: Path
    reads: list[tuple[int, int]] = field(default_factory=list)
    opens: int = 0

    @property
    def bytes_read(self) -> int:
        return sum(n for _, n in self.reads)

    @property
    def distinct_bytes(self) -> int:
        """Bytes of the file read at least once (a demuxer may read its first buffer again after a seek)."""
        covered, end = 0, 0
        for offset, n in sorted(self.reads):
            start = max(offset, end)
            if offset + n > start:
                covered += offset + n - start
            end = max(end, offset + n)
        return covered

    def ratio(self) -> float:
        return self.bytes_read / self.path.stat().st_size

    def touched(self, spans: list[tuple[int, int]]) -> list[int]:
        """Indexes of the ``(pos, size)`` spans any read overlapped."""
        return [i for i, (pos, size) in enumerate(spans) if any(a < pos + size and pos < a + n for a, n in self.reads)]


@contextmanager
def counting_reads(monkeypatch, path: Path, python_opens: bool = False) -> Iterator[ReadLog]:  # type: ignore[no-untyped-def]
    """While active, every ``av.open(path)`` for reading goes through a CountingFile, and with ``python_opens``
    every Python ``open(path, "rb")`` too (a reader of headers)."""
    log = ReadLog(path)
    real_open = av.open
    real_builtin_open = builtins.open
    target = os.path.realpath(path)

    def counting_open(file, mode="r", **kwargs):  # type: ignore[no-untyped-def]
        if mode == "r" and isinstance(file, (str, Path)) and os.path.realpath(file) == target:
            log.opens += 1
            return real_open(CountingFile(Path(file), log.reads), mode, **kwargs)
        return real_open(file, mode, **kwargs)

    def counting_builtin_open(file, mode="r", buffering=-1, *args, **kwargs):  # type: ignore[no-untyped-def]
        if mode == "rb" and isinstance(file, (str, Path)) and os.path.realpath(file) == target:
            log.opens += 1
            size = buffering if buffering > 0 else io.DEFAULT_BUFFER_SIZE
            return io.BufferedReader(CountingFile(Path(file), log.reads), buffer_size=size)
        return real_builtin_open(file, mode, buffering, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    if python_opens:
        monkeypatch.setattr(builtins, "open", counting_builtin_open)
    try:
        yield log
    finally:
        monkeypatch.setattr(av, "open", real_open)
        monkeypatch.setattr(builtins, "open", real_builtin_open)


def video_packets(path: Path) -> list[dict]:
    """ffprobe's video packets: pos, size, pts, flags (in file order)."""
    return ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=pos,size,pts,flags")["packets"]


def packet_spans(path: Path) -> list[tuple[int, int]]:
    return [(int(p["pos"]), int(p["size"])) for p in video_packets(path)]
