"""Each track's input quality over a run (``faces.quality`` measured on a sample of its frames), so a face too
degraded to restore faithfully is named in a preview's contact sheet and the report, before the GPU hours.

A track's face is measured on its first frame and then on one counted frame in ``QUALITY_EVERY`` (about 0.5 ms a
face at 1080p, on the frame's own samples, never the fused ones). The figures are the report's; no picture depends
on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gpen_video.faces.quality import TOO_DEGRADED, face_quality
from gpen_video.faces.types import TrackedFace

#: a track's face is measured on one counted frame in this many (and on its first)
QUALITY_EVERY = 8


@dataclass(frozen=True)
class TrackQuality:
    """One track's input quality: the means over its measured frames, and its worst frame's score."""

    id: int
    samples: int
    score: float
    worst: float
    worst_frame: int
    face_px: float
    noise: float
    too_degraded_share: float  # of its measured frames, the share under ``TOO_DEGRADED``

    @property
    def too_degraded(self) -> bool:
        return self.score < TOO_DEGRADED

    def describe(self) -> str:
        """A few words for the contact sheet."""
        return f"quality {self.score:.2f}" + (" (too degraded)" if self.too_degraded else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "samples": self.samples,
            "score": round(self.score, 3),
            "worst": round(self.worst, 3),
            "worst_frame": self.worst_frame,
            "face_px": round(self.face_px, 1),
            "noise": round(self.noise, 2),
            "too_degraded_share": round(self.too_degraded_share, 3),
            "too_degraded": self.too_degraded,
        }


@dataclass
class _Running:
    samples: int = 0
    score: float = 0.0
    worst: float = 2.0
    worst_frame: int = 0
    face_px: float = 0.0
    noise: float = 0.0
    degraded: int = 0


class QualityTally:
    """Measures each track's face on a sample of the counted frames (``add``) and sums them up (``summary``)."""

    def __init__(self, every: int = QUALITY_EVERY) -> None:
        self.every = every
        self.tracks: dict[int, _Running] = {}

    def add(self, number: int, face: TrackedFace, image: np.ndarray) -> None:
        """``face`` in counted frame ``number`` (the reports' numbering) of the upright ``image``."""
        running = self.tracks.get(face.track_id)
        if running is not None and number % self.every:
            return
        running = self.tracks.setdefault(face.track_id, _Running())
        quality = face_quality(image, face.landmarks5)
        running.samples += 1
        running.score += quality.score
        running.face_px += quality.face_px
        running.noise += quality.noise
        running.degraded += int(quality.too_degraded)
        if quality.score < running.worst:
            running.worst, running.worst_frame = quality.score, number

    def summary(self) -> tuple[TrackQuality, ...]:
        return tuple(
            TrackQuality(
                track_id,
                r.samples,
                r.score / r.samples,
                r.worst,
                r.worst_frame,
                r.face_px / r.samples,
                r.noise / r.samples,
                r.degraded / r.samples,
            )
            for track_id, r in sorted(self.tracks.items())
        )


def too_degraded_warning(tracks: tuple[TrackQuality, ...], left_alone: set[int]) -> str | None:
    """One line naming the tracks to be restored whose faces are too degraded to restore faithfully, or None."""
    named = [t for t in tracks if t.too_degraded and t.id not in left_alone]
    if not named:
        return None
    listed = ", ".join(f"{t.id} ({t.face_px:.0f} px, {t.score:.2f})" for t in named[:8])
    more = f" and {len(named) - 8} more" if len(named) > 8 else ""
    return (
        f"{len(named)} track(s) too degraded to restore faithfully (input quality under {TOO_DEGRADED:g}: the restorer "
        f"invents such faces): {listed}{more}; --tracks-select with -ID, or --min-face-height, leaves them alone"
    )
