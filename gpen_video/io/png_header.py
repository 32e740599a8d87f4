"""The PNG chunks that describe a scan's picture (colour: iCCP, sRGB, gAMA, cHRM, cICP, sBIT; pixel size: pHYs;
text and EXIF), read from a source file and written into the file FFmpeg's encoder made of the restored frame.

FFmpeg's PNG encoder writes the ICC profile only when the frame still carries it (a restored frame does not) and
no text at all. ``PngHeader.keep_in`` drops the encoder's chunks of the kept kinds and puts the source's right
after IHDR (where every one of them may stand), each chunk copied whole with its CRC. Picture data is untouched.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x89PNG\r\n\x1a\n"
KEPT_CHUNKS = (b"iCCP", b"sRGB", b"gAMA", b"cHRM", b"cICP", b"sBIT", b"pHYs", b"tEXt", b"iTXt", b"zTXt", b"eXIf")
_ENCODERS = (b"PLTE", b"tRNS", b"tIME")  # the palette and its transparency as encoded; the time of writing
_STOP = (b"IDAT", b"IEND")  # the kept chunks all come before the picture data
_COLOUR_TYPES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}


class PngHeaderError(ValueError):
    """Not a PNG file, or one cut short before its picture data."""


@dataclass(frozen=True)
class PngChunk:
    kind: bytes
    data: bytes

    def encoded(self) -> bytes:
        crc = zlib.crc32(self.kind + self.data) & 0xFFFFFFFF
        return struct.pack(">I", len(self.data)) + self.kind + self.data + struct.pack(">I", crc)


@dataclass(frozen=True)
class PngHeader:
    """IHDR's fields and the chunks before the picture data."""

    width: int
    height: int
    bits: int
    colour_type: int
    chunks: tuple[PngChunk, ...]

    @classmethod
    def read(cls, path: Path) -> PngHeader:
        with open(path, "rb") as handle:
            head = handle.read(len(MAGIC))
            if head != MAGIC:
                raise PngHeaderError(f"{path.name}: not a PNG file")
            chunks = []
            while True:
                top = handle.read(8)
                if len(top) < 8:
                    raise PngHeaderError(f"{path.name}: the file ends before its picture data")
                length, kind = struct.unpack(">I4s", top)
                if kind in _STOP:
                    break
                chunks.append(PngChunk(kind, handle.read(length)))
                handle.seek(4, 1)  # the CRC
        if not chunks or chunks[0].kind != b"IHDR":
            raise PngHeaderError(f"{path.name}: no IHDR chunk first")
        width, height, bits, colour_type = struct.unpack(">IIBB", chunks[0].data[:10])
        return cls(width, height, bits, colour_type, tuple(chunks[1:]))

    def kept(self) -> list[PngChunk]:
        return [c for c in self.chunks if c.kind in KEPT_CHUNKS]

    def describe(self) -> list[str]:
        items = [f"{self.width}x{self.height}", f"{self.bits}-bit", _COLOUR_TYPES.get(self.colour_type, "unknown")]
        for chunk in self.kept():
            if chunk.kind == b"pHYs" and len(chunk.data) == 9:
                x, y, unit = struct.unpack(">IIB", chunk.data)
                items.append(f"pixels {x}x{y} per metre" if unit == 1 else f"pHYs {x}:{y} (no unit)")
            elif chunk.kind in (b"tEXt", b"iTXt", b"zTXt"):
                keyword = chunk.data.split(b"\0")[0].decode("latin-1")
                items.append(f"text '{keyword}'")
            else:
                items.append(f"{chunk.kind.decode()} ({len(chunk.data)} bytes)")
        return items

    def keep_in(self, encoded: bytes) -> tuple[bytes, list[str]]:
        """``encoded`` (a PNG file) with this header's kept chunks in place of its own; and what was not kept."""
        if not encoded.startswith(MAGIC):
            return encoded, ["the encoder's PNG has no header to write the source's chunks into"]
        kept = b"".join(c.encoded() for c in self.kept())
        out, at, placed = bytearray(MAGIC), len(MAGIC), False
        while at + 8 <= len(encoded):
            length, kind = struct.unpack_from(">I4s", encoded, at)
            whole = encoded[at : at + 12 + length]
            at += 12 + length
            if kind in KEPT_CHUNKS:
                continue
            out += whole
            if kind == b"IHDR" and not placed:
                out += kept
                placed = True
        dropped = sorted({c.kind.decode() for c in self.chunks if c.kind not in KEPT_CHUNKS + _ENCODERS})
        notes = [f"PNG chunks {', '.join(dropped)} are not written"] if dropped else []
        return bytes(out), notes
