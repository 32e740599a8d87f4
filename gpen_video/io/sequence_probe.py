"""``gpen-video probe`` on an image sequence: its frame range and holes, its picture (size, pixel format, bit
depth) and the first file's header fields (DPX transfer, colorimetric, pixel aspect, timecode, frame rate; TIFF
resolution, photometric, bits, ICC profile, description...).

The first file is decoded; every other file's size and bit depth are read from its header (DPX, TIFF, PNG: a few
bytes each, so a 100,000-frame scan is probed in seconds), and one that differs is an error in one line, as it
would be for restore, only sooner.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from gpen_video.io.dpx_header import DpxHeader
from gpen_video.io.image_headers import HeaderError, ImageHeader, read_header
from gpen_video.io.sequence import ImageSequence, SequenceError, decode_image, find_sequence, frame_format

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PictureShape:
    """What a file's header says of its picture: size and bits a sample (0: not said)."""

    width: int
    height: int
    bits: int = 0

    def describe(self) -> str:
        return f"{self.width}x{self.height}" + (f" {self.bits}-bit" if self.bits else "")


@dataclass(frozen=True)
class SequenceProbe:
    """What ``probe`` says of an image sequence."""

    spec: str
    pattern: str
    codec: str
    files: int
    first: int | None
    last: int | None
    missing: tuple[str, ...]  # the holes, as ``1003`` or ``1005-1006``
    missing_count: int
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    size_bytes: int
    header: tuple[str, ...] = field(default=())  # the first file's header fields, in words

    def describe(self) -> list[str]:
        if self.files == 1:
            frames = "1 still" + (f" (frame {self.first})" if self.first is not None else "")
        else:
            frames = f"frames {self.first}-{self.last}, {self.files} files"
        lines = [
            f"{self.spec}: image sequence {self.pattern}, {frames}, {self.size_bytes / 1e6:.1f} MB",
            f"  picture: {self.codec}, {self.width}x{self.height}, {self.pix_fmt}, {self.bit_depth}-bit",
        ]
        if self.missing:
            shown = ", ".join(self.missing[:12]) + (", ..." if len(self.missing) > 12 else "")
            lines.append(f"  missing: {self.missing_count} frame(s): {shown} (restore needs --allow-gaps)")
        else:
            lines.append("  missing: none")
        if self.header:
            lines.append(f"  {self.codec.upper()} header: " + ", ".join(self.header))
        return lines

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def probe_sequence(spec: str | Path) -> SequenceProbe:
    """The sequence ``spec`` names, checked file by file (``SequenceError`` in one line when it is no sequence)."""
    sequence = find_sequence(spec, on_gap="list")
    picture = frame_format(decode_image(sequence.files[0].path), sequence.codec)
    header = _first_header(sequence)
    check_shapes(sequence)
    numbers = [f.number for f in sequence.files]
    return SequenceProbe(
        spec=str(spec), pattern=sequence.pattern, codec=sequence.codec, files=len(sequence.files),
        first=numbers[0], last=numbers[-1], missing=tuple(g.describe() for g in sequence.gaps),
        missing_count=sum(g.count for g in sequence.gaps), width=picture.width, height=picture.height,
        pix_fmt=picture.pix_fmt, bit_depth=picture.bit_depth,
        size_bytes=sum(f.path.stat().st_size for f in sequence.files),
        header=tuple(header.describe()) if header is not None else (),
    )  # fmt: skip


def _first_header(sequence: ImageSequence) -> ImageHeader | None:
    try:
        return read_header(sequence.files[0].path, sequence.codec)
    except HeaderError as exc:
        raise SequenceError(f"{exc}; replace the file or leave it out") from exc


def check_shapes(sequence: ImageSequence) -> None:
    """Every file's header says the first file's size and bit depth; else ``SequenceError`` naming the first
    that does not. Kinds whose headers are not read here (EXR) are checked on the last file, decoded."""
    files = sequence.files
    first = file_shape(files[0].path, sequence.codec)
    if first is None:
        fmt, last = (frame_format(decode_image(f.path), sequence.codec) for f in (files[0], files[-1]))
        if (last.width, last.height, last.pix_fmt) != (fmt.width, fmt.height, fmt.pix_fmt):
            raise SequenceError(f"{files[-1].path.name} is {last.width}x{last.height} {last.pix_fmt}, the sequence "
                                f"is {fmt.width}x{fmt.height} {fmt.pix_fmt}; every file must match")  # fmt: skip
        return
    for f in files[1:]:
        shape = file_shape(f.path, sequence.codec)
        if shape != first:
            said = shape.describe() if shape else "unreadable"
            raise SequenceError(
                f"{f.path.name} is {said}, the sequence ({files[0].path.name}) is {first.describe()}; every file "
                "must match: move the odd ones out or name the sequence with a narrower pattern"
            )


def file_shape(path: Path, codec: str) -> PictureShape | None:
    """Size and bit depth from the header of a DPX, TIFF or PNG file; None for other kinds or a broken header."""
    if codec == "png":
        with open(path, "rb") as handle:
            head = handle.read(26)
        if len(head) < 26 or not head.startswith(_PNG_MAGIC):
            return None
        width, height, bits = struct.unpack(">IIB", head[16:25])
        return PictureShape(width, height, bits)
    try:
        header = read_header(path, codec)
    except HeaderError:
        return None
    if header is None:
        return None
    if isinstance(header, DpxHeader):
        return PictureShape(header.width, header.height, header.bit_size)
    width, height = header.size
    return PictureShape(width, height, header.bits)
