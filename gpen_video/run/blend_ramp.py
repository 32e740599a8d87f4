"""How far each face's blend is kept under ``identity.guard: protect``: 0 on the frames where its track's restored face
is another person, back to 1 over ``ramp`` frames each side, so the face never switches between source and restored
from one frame to the next.

Frames are counted in the order they arrive (written or not). A distant sample at frame s of a track, with one face in N
measured (``every``), makes the frames s-N+1..s+N-1 of that track "distant" (those between it and its neighbouring
samples); a face at distance d frames from the nearest distant frame gets ``smoothstep(d / (ramp + 1))``: 0 at d = 0,
rising monotonically to 1 at d = ramp + 1. A face's factor depends on the distant samples up to ``reach`` frames after
it, and on nothing else.
"""

from __future__ import annotations

from collections import deque

from gpen_video.config import IdentityConfig


def ramp_factor(distance: int, ramp: int) -> float:
    """The blend factor ``distance`` frames from a distant frame: smoothstep from 0 (on it) to 1 (``ramp`` + 1 away)."""
    if distance > ramp:
        return 1.0
    x = distance / (ramp + 1)
    return x * x * (3.0 - 2.0 * x)


class BlendRamp:
    """The distant samples of each track, and each face's factor from them."""

    def __init__(self, config: IdentityConfig) -> None:
        self.ramp, self.every = config.ramp, config.every
        self.reach = config.reach  # how many frames after a face its factor looks
        self.distant: dict[int, deque[int]] = {}

    def add(self, track: int, frame: int) -> None:
        """A distant sample of ``track`` at ``frame`` (in increasing frame order)."""
        self.distant.setdefault(track, deque()).append(frame)

    def factor(self, track: int, frame: int) -> float:
        """The factor of ``track``'s face in ``frame``, from the distant samples known (all those up to ``frame`` +
        ``reach`` must be)."""
        best = 1.0
        for sample in self.distant.get(track, ()):
            distance = max(abs(frame - sample) - (self.every - 1), 0)
            best = min(best, ramp_factor(distance, self.ramp))
        return best

    def forget_before(self, frame: int) -> None:
        """Drop the samples no face from ``frame`` on can be lowered by."""
        for track in list(self.distant):
            samples = self.distant[track]
            while samples and samples[0] < frame - self.reach:
                samples.popleft()
            if not samples:
                del self.distant[track]
