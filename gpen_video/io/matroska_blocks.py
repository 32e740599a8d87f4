"""The blocks of a Matroska file, read from their headers alone: which track, when, how big, key or not.

A written Matroska output (an FFV1 master is often as large as its source) is verified from its blocks' headers,
a few bytes each, seeking past every frame's payload: the same presentation times and sizes a demux would give,
for a fraction of the reading. Layout from the Matroska specification (RFC 9559): EBML elements are an ID, a
size (both variable-length integers) and a payload; a Segment holds Info (TimestampScale), Tracks (TrackEntry:
TrackNumber, ContentEncodings) and Clusters (Timestamp, SimpleBlock, BlockGroup/Block). A block begins with
its track number (a variable-length integer), a signed 16-bit time relative to its cluster's, and flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

__all__ = ["MatroskaBlocks", "TrackBlocks", "read_blocks"]

_SEGMENT, _INFO, _TRACKS, _CLUSTER = 0x18538067, 0x1549A966, 0x1654AE6B, 0x1F43B675
_TIMESTAMP_SCALE, _TRACK_ENTRY, _TRACK_NUMBER, _CONTENT_ENCODINGS = 0x2AD7B1, 0xAE, 0xD7, 0x6D80
_CLUSTER_TIMESTAMP, _SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK = 0xE7, 0xA3, 0xA0, 0xA1
_UNKNOWN = -1  # an element whose size was not written (a live or unfinished file)
_BUFFER = 64  # bytes read at each seek: a block's header and a little of its frame


@dataclass
class TrackBlocks:
    """One track's blocks in file order: presentation times (in the segment's ``time_base``), payload sizes,
    key flags."""

    pts: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    keys: list[bool] = field(default_factory=list)


@dataclass
class MatroskaBlocks:
    time_base: Fraction  # TimestampScale (ns) as seconds
    track_numbers: list[int]  # in TrackEntry order: FFmpeg's stream order
    tracks: dict[int, TrackBlocks]  # track number -> its blocks


class _Unreadable(Exception):
    """The file is not laid out as this reader expects (laced or header-stripped video, unknown sizes)."""


def read_blocks(path: Path) -> MatroskaBlocks | None:
    """Every block's header in ``path``, or None where the headers alone cannot say what a demux would (laced
    frames, header-stripping ContentEncodings, an element of unknown size, a cut file)."""
    with open(path, "rb", buffering=_BUFFER) as file:
        reader = _Reader(file, path.stat().st_size)
        try:
            return reader.segment()
        except (_Unreadable, EOFError):
            return None


class _Reader:
    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file = file
        self.size = size
        self.scale = 1_000_000
        self.numbers: list[int] = []
        self.encoded: set[int] = set()
        self.tracks: dict[int, TrackBlocks] = {}

    def segment(self) -> MatroskaBlocks:
        while self.file.tell() < self.size:
            ident, size = self._header()
            if ident != _SEGMENT:
                self._skip(size)
                continue
            end = self.size if size == _UNKNOWN else self.file.tell() + size
            self._children(end)
            return MatroskaBlocks(Fraction(self.scale, 10**9), self.numbers, self.tracks)
        raise _Unreadable

    def _children(self, end: int) -> None:
        for ident, size in self._elements(end):
            stop = self.file.tell() + size
            if stop > self.size:
                raise EOFError  # a cut file: its last element is not whole
            if ident == _INFO:
                self._info(stop)
            elif ident == _TRACKS:
                self._tracks(stop)
            elif ident == _CLUSTER:
                self._cluster(stop)

    def _info(self, end: int) -> None:
        for ident, size in self._elements(end):
            if ident == _TIMESTAMP_SCALE:
                self.scale = self._uint(size)

    def _tracks(self, end: int) -> None:
        for ident, size in self._elements(end):
            if ident != _TRACK_ENTRY:
                continue
            number, encoded, stop = None, False, self.file.tell() + size
            for inner, inner_size in self._elements(stop):
                if inner == _TRACK_NUMBER:
                    number = self._uint(inner_size)
                encoded |= inner == _CONTENT_ENCODINGS
            if number is None:
                raise _Unreadable
            self.numbers.append(number)
            if encoded:
                self.encoded.add(number)

    def _cluster(self, end: int) -> None:
        base = 0
        for ident, size in self._elements(end):
            if ident == _CLUSTER_TIMESTAMP:
                base = self._uint(size)
            elif ident == _SIMPLE_BLOCK:
                self._block(base, size, simple=True)
            elif ident == _BLOCK_GROUP:
                self._block_group(base, self.file.tell() + size)

    def _block_group(self, base: int, end: int) -> None:
        """A Block is a key frame unless its group holds a ReferenceBlock (0xFB), before or after it."""
        number, referenced = None, False
        for inner, inner_size in self._elements(end):
            if inner == _BLOCK:
                number = self._block(base, inner_size, simple=False)
            referenced |= inner == 0xFB
        if number is not None:
            self.tracks[number].keys[-1] = not referenced

    def _block(self, base: int, size: int, simple: bool) -> int:
        start = self.file.tell()
        number, length = self._vint(marker=False)
        head = self._read(3)
        relative = int.from_bytes(head[:2], "big", signed=True)
        flags = head[2]
        if flags & 0x06 or number in self.encoded:  # laced frames, or stored with their headers stripped
            raise _Unreadable
        track = self.tracks.setdefault(number, TrackBlocks())
        track.pts.append(base + relative)
        track.sizes.append(size - length - 3)
        track.keys.append(bool(flags & 0x80) if simple else True)
        self.file.seek(start + size)
        return number

    # -- EBML ----------------------------------------------------------------------------------------

    def _elements(self, end: int):
        """(id, size) of each child up to ``end``, the file left at each one's payload (skipped if not read)."""
        while self.file.tell() < end:
            ident, size = self._header()
            if size == _UNKNOWN:
                raise _Unreadable
            stop = self.file.tell() + size
            yield ident, size
            self.file.seek(stop)

    def _header(self) -> tuple[int, int]:
        ident, _ = self._vint(marker=True)
        size, length = self._vint(marker=False)
        if size == (1 << (7 * length)) - 1:
            return ident, _UNKNOWN
        return ident, size

    def _vint(self, marker: bool) -> tuple[int, int]:
        """A variable-length integer: (value, length); an ID keeps its length marker (``marker``)."""
        first = self._read(1)[0]
        length = next((n for n in range(8) if first & (0x80 >> n)), None)
        if length is None:
            raise _Unreadable
        rest = self._read(length)
        value = first if marker else first & (0xFF >> (length + 1))
        for byte in rest:
            value = (value << 8) | byte
        return value, length + 1

    def _uint(self, size: int) -> int:
        return int.from_bytes(self._read(size), "big")

    def _skip(self, size: int) -> None:
        if size == _UNKNOWN:
            raise _Unreadable
        self.file.seek(self.file.tell() + size)

    def _read(self, count: int) -> bytes:
        data = self.file.read(count)
        if len(data) != count:
            raise EOFError
        return data
