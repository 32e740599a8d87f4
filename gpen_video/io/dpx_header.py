"""The DPX header fields that say how a scan's picture must be read (SMPTE 268M), read from a source file and
written into the file FFmpeg's encoder made of the restored frame.

FFmpeg's DPX encoder writes a bare generic header: transfer and colorimetric "unspecified video", pixel aspect
from the encoder context, no film or television header (so no timecode, no frame rate). A log or printing-density
scan written so would be read as video. ``DpxHeader.read`` takes the fields from the source; ``keep_in`` copies
them into an encoded file: the typed fields of the file, image-element and orientation headers (``PICTURE_FIELDS``)
are rewritten in the output's byte order, the film and television headers (and any user data) are inserted
before the picture samples with the offsets moved, so every picture sample stays as encoded. Fields that are
the encoder's to say (size, bit depth, packing, descriptor, data offsets) are left as it wrote them.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GENERIC_SIZE = 1664  # file + image + orientation headers (V1.0 and V2.0)
INDUSTRY_SIZE = 384  # film (256) + television (128) headers
HEADER_READ = GENERIC_SIZE + INDUSTRY_SIZE
_UNDEFINED_U32 = 0xFFFFFFFF
_MAGIC = {b"SDPX": ">", b"XPDS": "<"}

# SMPTE 268M table: the image element's transfer characteristic and colorimetric specification
TRANSFER_NAMES = {0: "user-defined", 1: "printing density", 2: "linear", 3: "logarithmic", 4: "unspecified video",
                  5: "SMPTE 274M", 6: "ITU-R BT.709", 7: "ITU-R BT.601 625-line", 8: "ITU-R BT.601 525-line",
                  9: "NTSC composite", 10: "PAL composite", 11: "Z linear", 12: "Z homogeneous", 13: "ADX",
                  14: "ITU-R BT.2020 NCL", 15: "ITU-R BT.2020 CL", 16: "IEC 61966-2-4 xvYCC", 17: "ITU-R BT.2100 PQ",
                  18: "ITU-R BT.2100 HLG"}  # fmt: skip
COLORIMETRIC_NAMES = {**TRANSFER_NAMES, 2: "not applicable", 3: "not applicable"}


@dataclass(frozen=True)
class DpxField:
    """One typed header field: ``count`` scalars of ``size`` bytes (1, 2, 4) at ``offset``; ``size`` 0: text."""

    name: str
    offset: int
    size: int
    count: int = 1

    @property
    def length(self) -> int:
        return self.count if self.size == 0 else self.size * self.count


def _text(name: str, offset: int, length: int) -> DpxField:
    return DpxField(name, offset, 0, length)


# What describes the picture in the generic header (element 0 for the image element's fields)
PICTURE_FIELDS = (
    _text("project", 260, 200), _text("copyright", 460, 200),
    DpxField("orientation", 768, 2),
    DpxField("reference_low_data", 784, 4), DpxField("reference_low_quantity", 788, 4),
    DpxField("reference_high_data", 792, 4), DpxField("reference_high_quantity", 796, 4),
    DpxField("transfer", 801, 1), DpxField("colorimetric", 802, 1), _text("element_description", 820, 32),
    DpxField("x_offset", 1408, 4), DpxField("y_offset", 1412, 4), DpxField("x_center", 1416, 4),
    DpxField("y_center", 1420, 4), DpxField("x_original_size", 1424, 4), DpxField("y_original_size", 1428, 4),
    _text("source_file_name", 1432, 100), _text("source_time", 1532, 24), _text("input_device", 1556, 32),
    _text("input_serial", 1588, 32), DpxField("border", 1620, 2, 4), DpxField("pixel_aspect", 1628, 4, 2),
)  # fmt: skip
# The film and television headers, at their place in a 2048-byte header
INDUSTRY_FIELDS = (
    _text("film_id", 1664, 16), _text("film_format", 1680, 32), DpxField("frame_position", 1712, 4),
    DpxField("sequence_length", 1716, 4), DpxField("held_count", 1720, 4), DpxField("film_frame_rate", 1724, 4),
    DpxField("shutter_angle", 1728, 4), _text("frame_id", 1732, 32), _text("slate", 1764, 100),
    _text("film_reserved", 1864, 56),
    DpxField("timecode", 1920, 4), DpxField("user_bits", 1924, 4), DpxField("interlace", 1928, 1),
    DpxField("field_number", 1929, 1), DpxField("video_signal", 1930, 1), DpxField("tv_padding", 1931, 1),
    DpxField("tv_values", 1932, 4, 10), _text("tv_reserved", 1972, 76),
)  # fmt: skip


class DpxHeaderError(ValueError):
    """Not a DPX file, or a header too short for its fields."""


@dataclass(frozen=True)
class DpxHeader:
    """A DPX file's header bytes and what they say; ``industry`` and ``user_data`` are ``b""`` when absent."""

    byte_order: str  # ">" (SDPX) or "<" (XPDS)
    generic: bytes  # the first 1664 bytes
    industry: bytes
    user_data: bytes
    elements: int

    @classmethod
    def read(cls, path: Path) -> DpxHeader:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_READ)
            order = _MAGIC.get(head[:4])
            if order is None or len(head) < GENERIC_SIZE:
                raise DpxHeaderError(f"{path.name}: not a DPX file")
            image_offset, generic_size, industry_size, user_size = (
                struct.unpack_from(order + "I", head, at)[0] for at in (4, 24, 28, 32)
            )
            has_industry = industry_size >= INDUSTRY_SIZE and generic_size == GENERIC_SIZE and len(head) >= HEADER_READ
            industry = head[GENERIC_SIZE:HEADER_READ] if has_industry else b""
            user_data = b""
            if has_industry and 0 < user_size <= image_offset - HEADER_READ:
                handle.seek(GENERIC_SIZE + industry_size)
                user_data = handle.read(user_size)
        elements = struct.unpack_from(order + "H", head, 770)[0]
        return cls(order, head[:GENERIC_SIZE], industry, user_data, elements)

    # -- what the fields say --------------------------------------------------------------------------------
    def _u(self, offset: int, size: int, data: bytes | None = None) -> int:
        fmt = {1: "B", 2: "H", 4: "I"}[size]
        return struct.unpack_from(self.byte_order + fmt, data if data is not None else self.generic, offset)[0]

    def _f(self, offset: int) -> float | None:
        if not self.industry or self._u(offset - GENERIC_SIZE, 4, self.industry) == _UNDEFINED_U32:
            return None
        value = struct.unpack_from(self.byte_order + "f", self.industry, offset - GENERIC_SIZE)[0]
        return value if value == value and value > 0 else None  # NaN or nonsense: undefined

    @property
    def transfer(self) -> int:
        return self.generic[801]

    @property
    def colorimetric(self) -> int:
        return self.generic[802]

    @property
    def bit_size(self) -> int:
        return self.generic[803]

    @property
    def width(self) -> int:
        return self._u(772, 4)

    @property
    def height(self) -> int:
        return self._u(776, 4)

    @property
    def pixel_aspect(self) -> tuple[int, int] | None:
        h, v = self._u(1628, 4), self._u(1632, 4)
        return None if 0 in (h, v) or _UNDEFINED_U32 in (h, v) else (h, v)

    @property
    def timecode(self) -> str | None:
        """``HH:MM:SS:FF`` from the television header's BCD, or None when undefined."""
        if not self.industry:
            return None
        value = self._u(1920 - GENERIC_SIZE, 4, self.industry)
        if value == _UNDEFINED_U32:
            return None
        digits = f"{value:08x}"
        if not digits.isdigit():
            return None
        return ":".join(digits[i : i + 2] for i in range(0, 8, 2))

    @property
    def film_frame_rate(self) -> float | None:
        return self._f(1724)

    @property
    def tv_frame_rate(self) -> float | None:
        return self._f(1940)

    @property
    def frame_rate(self) -> float | None:
        return self.film_frame_rate or self.tv_frame_rate

    def text(self, offset: int, length: int) -> str:
        return self.generic[offset : offset + length].split(b"\0")[0].decode("latin-1").strip()

    def describe(self) -> list[str]:
        """What the header says of the picture, in words, one item a field."""
        aspect = self.pixel_aspect
        items = [
            f"transfer {describe_code(TRANSFER_NAMES, self.transfer)}",
            f"colorimetric {describe_code(COLORIMETRIC_NAMES, self.colorimetric)}",
            f"{self.bit_size}-bit",
            "pixel aspect " + (f"{aspect[0]}:{aspect[1]}" if aspect else "not set"),
        ]
        if self.timecode:
            items.append(f"timecode {self.timecode}")
        if self.frame_rate:
            items.append(f"{self.frame_rate:.3f} fps")
        if self.elements > 1:
            items.append(f"{self.elements} image elements")
        for label, offset, length in (("input device", 1556, 32), ("creator", 160, 100)):
            if self.text(offset, length):
                items.append(f"{label} {self.text(offset, length)}")
        return items

    # -- writing them into another file ---------------------------------------------------------------------
    def keep_in(self, encoded: bytes) -> tuple[bytes, list[str]]:
        """``encoded`` (a DPX file) with this header's picture fields, film and television headers and user data;
        and what could not be kept, in words. Only the header is rebuilt; the samples are copied once."""
        order = _MAGIC.get(encoded[:4])
        if order is None or len(encoded) < GENERIC_SIZE:
            return encoded, ["the encoder's DPX has no header to write the source's fields into"]
        (image_offset,) = struct.unpack_from(order + "I", encoded, 4)
        if not GENERIC_SIZE <= image_offset <= len(encoded):
            return encoded, [
                "the encoder's DPX header is of a layout not known here; the source's fields were not kept"
            ]
        head = bytearray(encoded[:image_offset])
        for f in PICTURE_FIELDS:
            _put(head, f, self.generic, self.byte_order, order)
        notes = []
        if self.elements > 1:
            notes.append(f"the source has {self.elements} image elements; the output one, with the first's fields")
        if self.industry:
            head = _with_industry(head, order, self.industry, self.byte_order, self.user_data)
        samples = memoryview(encoded)[image_offset:]
        struct.pack_into(order + "I", head, 16, len(head) + len(samples))
        return b"".join((head, samples)), notes


def describe_code(names: dict[int, str], code: int) -> str:
    return f"{names.get(code, 'reserved')} ({code})"


def _swapped(data: bytes, size: int) -> bytes:
    return b"".join(data[i : i + size][::-1] for i in range(0, len(data), size))


def _put(out: bytearray, f: DpxField, source: bytes, source_order: str, out_order: str, at: int = 0) -> None:
    """``f`` from ``source`` (read at ``f.offset - at``) into ``out`` at ``f.offset``, in ``out``'s byte order."""
    data = source[f.offset - at : f.offset - at + f.length]
    if f.size > 1 and source_order != out_order:
        data = _swapped(data, f.size)
    out[f.offset : f.offset + f.length] = data


def _with_industry(head: bytearray, order: str, industry: bytes, source_order: str, user_data: bytes) -> bytearray:
    """The header ``head`` (everything before the samples) with the film and television headers (and user data)
    at 1664 and the offsets to the samples moved behind them."""
    generic_size, industry_size = (struct.unpack_from(order + "I", head, at)[0] for at in (24, 28))
    if generic_size == GENERIC_SIZE and industry_size >= INDUSTRY_SIZE and len(head) >= HEADER_READ:
        for f in INDUSTRY_FIELDS:  # the encoder wrote one: fill it in
            _put(head, f, industry, source_order, order, at=GENERIC_SIZE)
        return head
    block = bytearray(HEADER_READ)
    for f in INDUSTRY_FIELDS:
        _put(block, f, industry, source_order, order, at=GENERIC_SIZE)
    result = head[:GENERIC_SIZE] + block[GENERIC_SIZE:] + user_data
    moved = len(result) - len(head)
    struct.pack_into(order + "I", result, 4, len(result))  # the samples start right after
    struct.pack_into(order + "I", result, 28, INDUSTRY_SIZE)
    struct.pack_into(order + "I", result, 32, len(user_data))
    elements = struct.unpack_from(order + "H", result, 770)[0]
    for element in range(min(elements, 8)):
        at = 808 + 72 * element
        offset = struct.unpack_from(order + "I", result, at)[0]
        if offset not in (0, _UNDEFINED_U32):
            struct.pack_into(order + "I", result, at, offset + moved)
    return result
