"""Whether an MPEG transport or program stream was cut short, read from its last bytes.

A TS or PS declares no duration: FFmpeg estimates one from the last timestamps in the file, so a file cut short
looks complete by its own account. What a cut leaves is in the bytes: a TS whose size is not a whole number of
its packets (a recorder stopped mid-write), or a last PES packet that declares more bytes than the file still
holds (TS: audio and other bounded PES; video PES there are usually unbounded, length 0, and say nothing; PS:
every PES is bounded). Only the file's tail is read (``TAIL_BYTES``). A file cut exactly between two complete
PES packets holds no such trace; where the video has B-frames the frame count shows it (``reader.truncation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

TAIL_BYTES = 256 * 1024  # read from the end of the file: several PES packets of every stream at broadcast rates
TS_SYNC = 0x47
TS_PACKET_SIZES = (188, 192, 204)  # plain TS, M2TS (4-byte time code first), TS with Reed-Solomon parity
PES_PREFIX = b"\x00\x00\x01"
PS_PACK = b"\x00\x00\x01\xba"
PS_END = b"\x00\x00\x01\xb9"


def cut_tail(path: Path, format_name: str) -> str | None:
    """Why the MPEG file at ``path`` looks cut short (``format_name``: its demuxer), or None: no trace of a cut."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4 * max(TS_PACKET_SIZES))
            size = handle.seek(0, 2)
            if format_name.startswith("mpegts"):
                return _ts_cut(handle, head, size)
            if format_name == "mpeg":
                handle.seek(max(0, size - TAIL_BYTES))
                return _ps_cut(handle.read())
    except OSError:
        return None
    return None


def _ts_packet_size(head: bytes) -> tuple[int, int] | None:
    """(packet size, offset of the sync byte in a packet) of a TS whose first packets are in ``head``."""
    for size in TS_PACKET_SIZES:
        for lead in (0, 4):
            if len(head) >= lead + 3 * size and all(head[lead + i * size] == TS_SYNC for i in range(3)):
                return size, lead
    return None


@dataclass
class _Pes:
    """One PID's PES packet being read: the bytes it declares (0: unbounded) and those seen."""

    declared: int
    seen: int = 0


@dataclass
class _TsTail:
    pes: dict[int, _Pes] = field(default_factory=dict)  # pid -> its last PES packet, started inside the tail

    def packet(self, data: bytes) -> None:
        pid = ((data[1] & 0x1F) << 8) | data[2]
        start = bool(data[1] & 0x40)
        control = (data[3] >> 4) & 0x3
        if not control & 0x1:  # no payload
            return
        offset = 4 + (1 + data[4] if control & 0x2 else 0)
        payload = data[offset:]
        if start:
            if payload[:3] == PES_PREFIX and len(payload) >= 6:
                length = int.from_bytes(payload[4:6], "big")
                self.pes[pid] = _Pes(length + 6 if length else 0)
            else:
                self.pes.pop(pid, None)  # tables, not PES
                return
        current = self.pes.get(pid)
        if current is not None:
            current.seen += len(payload)


def _ts_cut(handle: BinaryIO, head: bytes, size: int) -> str | None:
    layout = _ts_packet_size(head)
    if layout is None:
        return None
    packet, lead = layout
    if size % packet:
        return f"it ends {size % packet} bytes into a {packet}-byte TS packet"
    first = max(0, size // packet - TAIL_BYTES // packet) * packet
    handle.seek(first)
    tail = handle.read()
    reader = _TsTail()
    for at in range(0, len(tail) - packet + 1, packet):
        data = tail[at + lead : at + lead + 188]
        if data[0] != TS_SYNC:
            return None  # not where packets should be: damage, not a cut, and not this check's to judge
        reader.packet(data)
    for pid, pes in sorted(reader.pes.items()):
        if pes.declared and pes.seen < pes.declared:
            return f"its last PES packet on PID {pid:#x} holds {pes.seen} of its {pes.declared} bytes"
    return None


def _ps_cut(tail: bytes) -> str | None:
    """A program stream's tail from its last pack header on: every PES packet there must be whole."""
    at = tail.rfind(PS_PACK)
    if at < 0:
        return None
    mpeg2 = len(tail) > at + 4 and tail[at + 4] & 0xC0 == 0x40
    if len(tail) - at < (14 if mpeg2 else 12):
        return "its last pack header is cut"
    at += 14 + (tail[at + 13] & 0x7) if mpeg2 else 12  # the pack header (MPEG-2: and its stuffing)
    while at + 6 <= len(tail) and tail[at : at + 3] == PES_PREFIX:
        if tail[at : at + 4] == PS_END:
            return None
        length = int.from_bytes(tail[at + 4 : at + 6], "big")
        if at + 6 + length > len(tail):
            return f"its last PES packet (stream {tail[at + 3]:#x}) holds {len(tail) - at - 6} of its {length} bytes"
        at += 6 + length
    if 0 < len(tail) - at < 6:
        return "it ends inside a PES packet header"
    return None
