"""The TIFF tags that describe a scan's picture, read from a source file and written into the file FFmpeg's
encoder made of the restored frame.

FFmpeg's TIFF encoder writes its own resolution (72 dpi), no ICC profile, no description: a 300-dpi scan with
a scanner profile would come back as a 72-dpi picture in no known colour. ``TiffHeader.read`` reads the first
IFD's entries; ``keep_in`` appends to the encoded file a new first IFD made of the encoder's entries (strips,
bit depth, photometric, compression: the encoder's to say) with the source's ``KEPT_TAGS`` in place of its own,
values rewritten in the output's byte order, and points the file header at it. Picture samples are not touched.
Classic TIFF only (a BigTIFF source is said not kept).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# tag -> name, for the tags kept from the source
KEPT_TAGS = {269: "DocumentName", 270: "ImageDescription", 271: "Make", 272: "Model", 282: "XResolution",
             283: "YResolution", 285: "PageName", 296: "ResolutionUnit", 306: "DateTime", 315: "Artist",
             316: "HostComputer", 318: "WhitePoint", 319: "PrimaryChromaticities", 700: "XMP",
             33432: "Copyright", 33723: "IPTC", 34675: "ICCProfile"}  # fmt: skip
# the encoder's to write (layout of the samples it encoded); compared with the source's, not copied
PICTURE_TAGS = {258: "BitsPerSample", 262: "PhotometricInterpretation", 277: "SamplesPerPixel", 339: "SampleFormat"}
_LAYOUT_TAGS = {254, 256, 257, 259, 273, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 305}
SOFTWARE = 305
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_TYPE_UNIT = {5: 4, 10: 4}  # rationals: two 4-byte integers, each swapped on its own
_MAGIC = {b"II*\0": "<", b"MM\0*": ">"}
_RESOLUTION_UNITS = {1: "no unit", 2: "inch", 3: "cm"}
_PHOTOMETRIC = {0: "min-is-white", 1: "min-is-black", 2: "RGB", 3: "palette", 4: "mask", 5: "separated (CMYK)",
                6: "YCbCr", 8: "CIELab"}  # fmt: skip


class TiffHeaderError(ValueError):
    """Not a classic TIFF file, or a broken first IFD."""


@dataclass(frozen=True)
class TiffEntry:
    tag: int
    type: int
    count: int
    value: bytes  # the value's bytes in the file's byte order

    def unit(self) -> int:
        return _TYPE_UNIT.get(self.type, _TYPE_SIZE.get(self.type, 1))

    def in_order(self, source_order: str, order: str) -> bytes:
        unit = self.unit()
        if unit == 1 or source_order == order:
            return self.value
        return b"".join(self.value[i : i + unit][::-1] for i in range(0, len(self.value), unit))


@dataclass(frozen=True)
class TiffHeader:
    """The first IFD of a TIFF file: its entries (values read) and byte order."""

    byte_order: str
    entries: dict[int, TiffEntry] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> TiffHeader:
        """Seeks to what it needs: a scan's samples are not read."""
        with open(path, "rb") as handle:

            def read_at(offset: int, length: int) -> bytes:
                handle.seek(offset)
                return handle.read(length)

            return cls._from(read_at, path.name)

    @classmethod
    def parse(cls, data: bytes, name: str = "file") -> TiffHeader:
        return cls._from(lambda offset, length: data[offset : offset + length], name)

    @classmethod
    def _from(cls, read_at: Callable[[int, int], bytes], name: str) -> TiffHeader:
        head = read_at(0, 8)
        order = _MAGIC.get(head[:4])
        if order is None or len(head) < 8:
            raise TiffHeaderError(f"{name}: not a classic TIFF file (BigTIFF or another format)")
        (ifd,) = struct.unpack_from(order + "I", head, 4)
        return cls(order, {e.tag: e for e in _entries(read_at, order, ifd, name)})

    # -- what the tags say ----------------------------------------------------------------------------------
    def numbers(self, tag: int) -> tuple[int, ...]:
        entry = self.entries.get(tag)
        if entry is None or entry.type not in (1, 3, 4, 5):
            return ()
        fmt = {1: "B", 3: "H", 4: "I", 5: "I"}[entry.type]
        count = entry.count * (2 if entry.type == 5 else 1)
        return struct.unpack_from(f"{self.byte_order}{count}{fmt}", entry.value)

    def text(self, tag: int) -> str | None:
        entry = self.entries.get(tag)
        if entry is None or entry.type != 2:
            return None
        return entry.value.split(b"\0")[0].decode("latin-1").strip()

    @property
    def size(self) -> tuple[int, int]:
        return (self.numbers(256) or (0,))[0], (self.numbers(257) or (0,))[0]

    @property
    def bits(self) -> int:
        return max(self.numbers(258) or (1,))

    @property
    def photometric(self) -> int | None:
        return (self.numbers(262) or (None,))[0]

    def resolution(self) -> str | None:
        x, y = self.numbers(282), self.numbers(283)
        if len(x) != 2 or len(y) != 2 or not x[1] or not y[1]:
            return None
        unit = _RESOLUTION_UNITS.get((self.numbers(296) or (2,))[0], "unknown unit")
        return (
            f"{x[0] / x[1]:g}x{y[0] / y[1]:g} per {unit}" if unit != "no unit" else f"{x[0] / x[1]:g}:{y[0] / y[1]:g}"
        )

    def describe(self) -> list[str]:
        width, height = self.size
        photometric = self.photometric
        said = _PHOTOMETRIC.get(photometric, "unknown") if photometric is not None else "not set"
        items = [f"{width}x{height}", f"{self.bits}-bit", f"photometric {said}"]
        resolution = self.resolution()
        items.append(f"resolution {resolution}" if resolution else "no resolution")
        if 34675 in self.entries:
            items.append(f"ICC profile ({self.entries[34675].count} bytes)")
        for tag in (270, 315, 33432, SOFTWARE):
            if self.text(tag):
                items.append(f"{KEPT_TAGS.get(tag, 'Software')} '{self.text(tag)}'")
        return items

    # -- writing them into another file ---------------------------------------------------------------------
    def kept(self) -> list[TiffEntry]:
        return [e for tag, e in sorted(self.entries.items()) if tag in KEPT_TAGS]

    def not_kept(self, written: TiffHeader) -> list[str]:
        """What of this header the file ``written`` does not say as this one does, in words."""
        notes = []
        for tag, name in PICTURE_TAGS.items():
            if tag in self.entries and self.numbers(tag) != written.numbers(tag):
                notes.append(f"TIFF {name} {_show(self.numbers(tag))} is {_show(written.numbers(tag))} in the output")
        mine, theirs = self.text(SOFTWARE), written.text(SOFTWARE)
        if mine and mine != theirs:
            notes.append(f"TIFF Software '{mine}' is the writer's '{theirs}' in the output")
        dropped = sorted(
            t for t in self.entries if t not in KEPT_TAGS and t not in PICTURE_TAGS and t not in _LAYOUT_TAGS
        )
        if dropped:
            notes.append(f"TIFF tags {', '.join(map(str, dropped))} (EXIF, GPS, private) are not written")
        return notes

    def keep_in(self, encoded: bytes) -> tuple[bytes, list[str]]:
        """``encoded`` (a TIFF file) with a first IFD holding this header's kept tags; and what was not kept."""
        try:
            written = TiffHeader.parse(encoded, "the encoded file")
        except TiffHeaderError:
            return encoded, ["the encoder's TIFF has no header to write the source's tags into"]
        order = written.byte_order
        (ifd,) = struct.unpack_from(order + "I", encoded, 4)
        (count,) = struct.unpack_from(order + "H", encoded, ifd)
        (next_ifd,) = struct.unpack_from(order + "I", encoded, ifd + 2 + 12 * count)
        kept = {e.tag: e for e in self.kept()}
        raw = {tag: _raw_entry(encoded, order, ifd, i) for i, tag in enumerate(_tags(encoded, order, ifd))}
        tail = bytearray(len(encoded) % 2)  # what is appended starts on a word boundary
        fields: dict[int, bytes] = {tag: entry for tag, entry in raw.items() if tag not in kept}
        for tag, entry in kept.items():
            value = entry.in_order(self.byte_order, order)
            if len(value) <= 4:
                slot = value.ljust(4, b"\0")
            else:
                slot = struct.pack(order + "I", len(encoded) + len(tail))
                tail += value + (b"\0" if len(value) % 2 else b"")
            fields[tag] = struct.pack(order + "HHI", tag, entry.type, entry.count) + slot
        new_ifd = len(encoded) + len(tail)
        tail += struct.pack(order + "H", len(fields)) + b"".join(fields[t] for t in sorted(fields))
        tail += struct.pack(order + "I", next_ifd)
        head = encoded[:4] + struct.pack(order + "I", new_ifd)
        return b"".join((head, memoryview(encoded)[8:], tail)), self.not_kept(written)


def _show(values: tuple[int, ...]) -> str:
    return "/".join(map(str, values)) if values else "not set"


def _tags(data: bytes, order: str, ifd: int) -> list[int]:
    (count,) = struct.unpack_from(order + "H", data, ifd)
    return [struct.unpack_from(order + "H", data, ifd + 2 + 12 * i)[0] for i in range(count)]


def _raw_entry(data: bytes, order: str, ifd: int, index: int) -> bytes:
    at = ifd + 2 + 12 * index
    return data[at : at + 12]


def _entries(read_at: Callable[[int, int], bytes], order: str, ifd: int, name: str) -> list[TiffEntry]:
    """The first IFD's entries, with the values of the tags this module reads (others: ``b""``)."""
    wanted = set(KEPT_TAGS) | set(PICTURE_TAGS) | {256, 257, 296, SOFTWARE}
    try:
        (count,) = struct.unpack(order + "H", read_at(ifd, 2))
        table = read_at(ifd + 2, 12 * count)
        entries = []
        for i in range(count):
            tag, kind, n, slot = struct.unpack_from(order + "HHI4s", table, 12 * i)
            length = _TYPE_SIZE.get(kind, 1) * n
            if length <= 4:
                value = slot[:length]
            elif tag not in wanted:
                value = b""
            else:
                (offset,) = struct.unpack(order + "I", slot)
                value = read_at(offset, length)
                if len(value) != length:
                    raise TiffHeaderError(f"{name}: tag {tag} points past the end of the file")
            entries.append(TiffEntry(tag, kind, n, value))
    except struct.error as exc:
        raise TiffHeaderError(f"{name}: the first IFD is cut short") from exc
    return entries
