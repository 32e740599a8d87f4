"""A face followed through one shot: its recent observations, the motion measured into each frame, and where
its landmarks are expected next."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gpen_video.faces.framing import Framing, follows_motion
from gpen_video.faces.motion import IDENTITY, Motion, MotionMeter, apply, compose

_PREDICT_FROM = 6  # observations the motion prediction is fitted to


@dataclass
class Observation:
    """One measured face in one frame (before smoothing)."""

    index: int
    landmarks: np.ndarray  # (5, 2) float64 frame pixels
    box: np.ndarray  # (4,) float64
    score: float
    spread: float = 0.0  # disagreement of the refinement's looks (face scales); 0 where unknown


@dataclass
class Track:
    """A face followed through one shot."""

    id: int
    shot: int
    observations: list[Observation] = field(default_factory=list)  # recent ones (the stage prunes old)
    framing: Framing | None = None  # where the refinement box goes (from the full detector only)
    count: int = 0  # observations ever made
    misses: int = 0  # consecutive frames without an observation
    active: bool = True
    first: int = 0  # frame of the first observation
    #: measured motion into each recent frame (frame index -> previous frame → that frame), pruned with observations
    motions: dict[int, Motion] = field(default_factory=dict)
    estimate: np.ndarray | None = None  # (5, 2) landmarks at the latest frame (observed, or carried by motion)
    #: (5, 2) where a small face's refinement box goes: its first observation carried by the measured motion
    #: (None for a face big enough to place its box from its own landmarks, or after an unreliable motion)
    reference: np.ndarray | None = None
    meter: MotionMeter = field(default_factory=MotionMeter)  # measures the motion into each frame
    keyframe_hits: int = 0  # full detections matched to this track
    best_score: float = 0.0  # best full-detection score
    plausible: bool = True  # landmark layout of a face at the first detection
    confirmed: bool = False  # set by the stage once the evidence agrees; never unset
    #: recent frames its refinement was left out (a steady face between looks, ``faces.refine_every``): not misses
    rested: set[int] = field(default_factory=set)
    rank: int = 0  # place among the tracks started on the same frame (ties broken the same way in every run)
    #: frames from here on are not this track's to give out (a new track took its face over, or it ended there)
    until: int | None = None
    #: a follower (it steers nothing, see ``Tracker``) is refined up to this frame, then ends: an orphan (a face the
    #: sync frame's detection missed) or a track a new one took over (its observations go on for the blend)
    stop: int | None = None
    #: the track this one took over from at its first frame (same face, same id: the stage blends from that one's
    #: landmarks into this one's), and the one that took over from this one
    predecessor: Track | None = field(default=None, repr=False)
    successor: Track | None = field(default=None, repr=False)

    @property
    def steering(self) -> bool:
        return self.stop is None

    @property
    def last(self) -> Observation:
        return self.observations[-1]

    def add(self, obs: Observation) -> None:
        self.observations.append(obs)
        self.count += 1
        self.misses = 0

    def predict(self, index: int) -> np.ndarray:
        """Landmarks expected at ``index``: the last few observations carried here by the measured motion
        and averaged (an average, not the last point, keeps the refinement box from chasing per-frame jitter,
        which would feed back into the next measurement); a straight-line fit where the motion is unreliable.
        """
        carried = []
        affine = IDENTITY
        k = index
        for obs in reversed(self.observations[-_PREDICT_FROM:]):
            while k > obs.index:
                link = self.motions.get(k)
                if link is None or not link.reliable:
                    break
                affine = compose(affine, link.affine)
                k -= 1
            if k != obs.index:
                break
            carried.append(apply(affine, obs.landmarks))
        if carried and (index in self.motions or self.last.index == index):
            return np.mean(carried, axis=0)
        return self._predict_linear(index)

    def placement(self, index: int) -> np.ndarray:
        """Landmarks the refinement box at ``index`` is placed around: the motion-carried reference of a small
        face, else the prediction."""
        return self.reference if self.reference is not None else self.predict(index)

    def follow(self, link: Motion | None) -> None:
        """Carry the reference into the next frame by the measured motion; drop it where that is unreliable
        (or the face has grown big enough to place its own box)."""
        if self.reference is None:
            return
        if link is None or not link.reliable or not follows_motion(self.reference):
            self.reference = None
        else:
            self.reference = apply(link.affine, self.reference)

    def _predict_linear(self, index: int) -> np.ndarray:
        """A straight-line fit through the last few observations.

        A fit (not the last two points) keeps the refinement box from chasing per-frame jitter, which
        would feed back into the next measurement and make the track swing.
        """
        recent = [o for o in self.observations[-_PREDICT_FROM:] if index - o.index <= 2 * _PREDICT_FROM]
        if len(recent) < 3:
            return self.last.landmarks
        t = np.array([o.index - index for o in recent], np.float64)
        values = np.stack([o.landmarks.reshape(-1) for o in recent])
        design = np.stack([np.ones_like(t), t], axis=1)
        coef, *_ = np.linalg.lstsq(design, values, rcond=None)
        return coef[0].reshape(5, 2)
