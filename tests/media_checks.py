"""Read back what a file holds, for comparing an output with its input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frame_times(path: Path) -> list[Fraction]:
    """Presentation time (seconds, exact) of every decoded video frame, in order."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [f.pts * s.time_base for f in c.decode(s)]


def side_packets(path: Path) -> list[tuple[str, str | None, list[bytes]]]:
    """(type, codec, [packet payloads]) of every non-video stream, in stream order."""
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type != "video"]
        payloads: dict[int, list[bytes]] = {s.index: [] for s in streams}
        for packet in c.demux(*streams):
            if packet.size:
                payloads[packet.stream.index].append(bytes(packet))
        return [(s.type, s.codec_context.name, payloads[s.index]) for s in streams]


def video_planes(path: Path) -> list[list[np.ndarray]]:
    """Decoded samples of every frame, plane by plane (uint16 above 8 bits)."""
    out = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            deep = max(comp.bits for comp in frame.format.components) > 8
            dtype = np.uint16 if deep else np.uint8
            planes = []
            for p in frame.planes:
                arr = np.frombuffer(p, dtype=dtype).reshape(p.height, -1)[:, : p.width]
                planes.append(arr.copy())
            out.append(planes)
    return out


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def video_stream_info(path: Path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        first = next(c.decode(s))
        return {
            "codec": cc.name,
            "profile": s.profile,
            "width": cc.width,
            "height": cc.height,
            "pix_fmt": first.format.name,
            "colorspace": int(first.colorspace),
            "color_range": int(first.color_range),
            "color_primaries": int(first.color_primaries),
            "color_trc": int(first.color_trc),
            "rotation": round(first.rotation or 0) % 360,
        }
