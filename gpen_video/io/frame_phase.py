"""A frame-counting encoder's timestamps kept where the source had them, not rounded to its frame grid.

Encoders tied to a standard frame rate (MPEG-1/2, DV) count time in frames (time base 1/rate), so each frame's
time is rounded to a multiple of the frame duration. A source whose first frame lies between two grid points (an
MPEG-PS at 0.54 s is 13.5 frames at 25 fps; a broadcast TS starts at any 90 kHz tick) would come out shifted by up
to half a frame (a field at 25i: 20 ms) against its audio, which is copied at its own times. The phase, the first
frame's distance from the grid, is taken out before the encoder and put back on its packets, in the source's
time base, so the muxer gets the source's own times.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av


@dataclass
class FramePhase:
    """The first frame's distance from the encoder's frame grid, in source ticks (found on the first frame)."""

    source_tb: Fraction  # the frames' own time base (the output stream's, before the muxer changes it)
    encoder_tb: Fraction  # the encoder's: one frame
    ticks: int | None = None

    def to_encoder(self, pts: int) -> int:
        """The frame's time on the encoder's grid (source ticks); the first frame sets the phase."""
        if self.ticks is None:
            frame = Fraction(self.encoder_tb) / Fraction(self.source_tb)
            self.ticks = pts - round(round(pts / frame) * frame)
        return pts - self.ticks

    def from_encoder(self, packets: list[av.Packet]) -> list[av.Packet]:
        """The encoder's packets back at the source's times, in the source's time base."""
        phase = self.ticks or 0
        for packet in packets:
            scale = Fraction(packet.time_base) / Fraction(self.source_tb) if packet.time_base else Fraction(1)
            if packet.pts is not None:
                packet.pts = round(packet.pts * scale) + phase
            if packet.dts is not None:
                packet.dts = round(packet.dts * scale) + phase
            if packet.duration:
                packet.duration = round(packet.duration * scale)
            packet.time_base = self.source_tb
        return packets
