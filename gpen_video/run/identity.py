"""The identity guard's measure and its report: which face recogniser a run uses, and per track how far the
restored faces are from their sources (``IdentityTally`` → ``IdentitySummary``, the report's ``identity``).

"A restorer that invents a face is worse than no restorer." The guard stage (``run.guard_stage``) measures, per
face, the recogniser's distance between the source crop and the restored crop; a face over the threshold (the
recogniser's own same-person distance unless ``identity.threshold`` says otherwise) is "another person". With
sampling (``identity.every`` N > 1) the faces of a track between a distant sample and its neighbouring samples
(those less than N frames from it) count as distant too.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpen_video.config import IdentityConfig
from gpen_video.errors import DependencyError
from gpen_video.faces.recognizers.base import Recognizer
from gpen_video.faces.recognizers.dlib_resnet import IDENTITY_EXTRA

log = logging.getLogger(__name__)

INSTALL = IDENTITY_EXTRA  # the factory's words: pip install 'gpen-video[identity]' (dlib's face recogniser ...)
#: ranges of one track the stderr line names at most (the report holds them all)
RANGES_SAID = 4


class RecognizerSource:
    """The guard's recogniser, made the first time a face needs it (a restored crop equal to its source does not):
    loading one costs about a second, which a dry run (``--model identity``) never needs to pay."""

    def __init__(self, config: IdentityConfig, make: Callable[[], Recognizer] | None = None) -> None:
        self.config = config
        self._make = make
        self.made: Recognizer | None = None

    def get(self) -> Recognizer:
        if self.made is None:
            if self._make is not None:
                self.made = self._make()
            else:
                from gpen_video.faces.recognizers import create_recognizer

                self.made = create_recognizer(self.config.recognizer)
                log.info("identity guard: %s recogniser loaded", self.made.name)
        return self.made

    @property
    def threshold(self) -> float:
        """The distance over which a restored face is another person: ``identity.threshold``, 0 the recogniser's own
        (which makes it)."""
        return self.config.threshold or float(self.get().threshold)

    def described(self) -> tuple[str, float | None]:
        """(the recogniser's name, its threshold) for the report, without making it where no face needed it."""
        if self.made is None:
            not_loaded = f"{self.config.recognizer} (not loaded: every restored face measured was its source)"
            return not_loaded, self.config.threshold or None
        return self.made.name, self.threshold


def open_recognizer(config: IdentityConfig) -> RecognizerSource | None:
    """The guard's recogniser (made at its first use), or None where the guard is off: ``off``, or ``warn`` without a
    recogniser (said in one logged line, and the run goes on). ``protect`` without one is refused here, before any
    work."""
    if config.guard == "off":
        return None
    if not recognizer_installed(config.recognizer):
        if config.guard == "protect":
            raise DependencyError(
                f"--identity-guard protect needs a face recogniser ({config.recognizer}) and none is installed: "
                f"{INSTALL}, or pass --identity-guard warn|off"
            )
        log.warning("identity guard off: no face recogniser (%s) is installed: %s", config.recognizer, INSTALL)
        return None
    return RecognizerSource(config)


def recognizer_installed(name: str) -> bool:
    """Whether ``create_recognizer(name)`` has a model to make (nothing is imported or loaded to tell)."""
    return recognizer_class(name) is not None


def recognizer_class(name: str) -> type[Recognizer] | None:
    """The class ``create_recognizer(name)`` would make where its model is installed, else None (its class attributes
    name it and give its threshold; nothing is imported or loaded to tell)."""
    from gpen_video.faces.recognizers import recognizer_available
    from gpen_video.faces.recognizers.arcface import ArcFaceRecognizer, find_arcface_model
    from gpen_video.faces.recognizers.dlib_resnet import DlibRecognizer, dlib_available

    key = name.strip().lower()
    if key == "auto" and not recognizer_available():
        return None
    if key in ("auto", "dlib") and dlib_available():
        return DlibRecognizer
    if key in ("auto", "arcface"):
        return ArcFaceRecognizer if find_arcface_model() is not None else None
    return ArcFaceRecognizer if key.endswith(".onnx") and Path(name).expanduser().is_file() else None


@dataclass(frozen=True)
class GuardPlan:
    """The guard a run with these settings would have (``probe --plan``): its mode in force, recogniser, threshold."""

    guard: str  # off | warn | protect; off also where warn finds no recogniser
    requested: str  # identity.guard as set
    recognizer: str | None
    threshold: float | None
    every: int
    ramp: int
    line: str


def plan_guard(config: IdentityConfig) -> GuardPlan:
    """What ``open_recognizer`` would give a run: the recogniser's class, not loaded (its name and threshold are
    the class's)."""
    recognizer = recognizer_class(config.recognizer) if config.guard != "off" else None
    name = recognizer.name if recognizer is not None else None
    threshold = (config.threshold or float(recognizer.threshold)) if recognizer is not None else None
    guard = config.guard if recognizer is not None or config.guard == "protect" else "off"
    line = config.describe(name, threshold)
    return GuardPlan(guard, config.guard, name, threshold, config.every, config.ramp, line)


def frame_ranges(ranges: list[list[int]]) -> str:
    """``[[0, 15], [20, 20]]`` -> ``"0-15, 20"``."""
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in ranges)


@dataclass(frozen=True)
class TrackIdentity:
    """One track's distances: its measured faces, their median and worst, and the frames counted as another
    person (first, last), in the report's frame numbers."""

    id: int
    checked: int
    median: float
    worst: float
    worst_frame: int
    over: tuple[tuple[int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "checked": self.checked, "median": round(self.median, 4),
                "worst": round(self.worst, 4), "worst_frame": self.worst_frame,
                "over": [list(r) for r in self.over]}  # fmt: skip


@dataclass(frozen=True)
class IdentitySummary:
    """The report's ``identity`` section: the guard in force, its recogniser and threshold, and what it found."""

    guard: str  # off | warn | protect: what the run did (off too where no recogniser was installed)
    recognizer: str | None = None
    threshold: float | None = None
    every: int = 1
    ramp: int = 0
    faces_checked: int = 0  # faces measured (those of one frame in ``every``)
    faces_over: int = 0  # faces counted as another person (measured, or between a distant sample and its neighbours)
    faces_protected: int = 0  # protect: faces whose blend was lowered
    faces_source_kept: int = 0  # protect: of those, faces left as the source (blend 0)
    tracks: tuple[TrackIdentity, ...] = ()

    @property
    def tracks_over(self) -> tuple[TrackIdentity, ...]:
        return tuple(t for t in self.tracks if t.over)

    def warning(self) -> str | None:
        """One line naming the tracks and frames over the threshold (None: none), for stderr even with ``-q``."""
        over = self.tracks_over
        if not over:
            return None
        named = "; ".join(f"track {t.id} frames {_said(t.over)}" for t in over)
        measure = f"{self.recognizer} distance over {self.threshold:g}"
        if self.guard == "protect":
            return f"identity guard: kept the source face where the restored one is another person ({measure}): {named}"
        return (
            f"identity guard: the restored face is another person ({measure}): {named}; "
            "--identity-guard protect keeps the source face there"
        )

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "tracks"}
        return data | {"tracks_over": [t.id for t in self.tracks_over], "tracks": [t.to_dict() for t in self.tracks]}


def _said(ranges: tuple[tuple[int, int], ...]) -> str:
    shown = frame_ranges([list(r) for r in ranges[:RANGES_SAID]])
    return shown + (f" (and {len(ranges) - RANGES_SAID} more ranges)" if len(ranges) > RANGES_SAID else "")


@dataclass
class _Track:
    distances: list[float] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)  # the frame of each distance
    over: list[list[int]] = field(default_factory=list)  # frame ranges counted as another person, in order
    recent: deque[int] = field(default_factory=deque)  # the track's last frames not counted, less than N back
    over_until: int = -1  # frames up to this one count as another person (after a distant sample)

    def mark(self, frame: int) -> None:
        if self.over and self.over[-1][1] == frame - 1:
            self.over[-1][1] = frame
        else:
            self.over.append([frame, frame])


class IdentityTally:
    """Per track: the distances measured and the frames counted as another person, fed face by face in frame
    order (``add``); memory grows by one float a measured face, plus the ranges."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.tracks: dict[int, _Track] = {}
        self.faces_over = 0
        self.faces_protected = 0
        self.faces_source_kept = 0

    def add(self, track: int, frame: int, distance: float | None, over: bool = False) -> None:
        """One face of ``track`` in ``frame`` (the report's number), measured (``distance``; ``over`` the threshold)
        or not (None, between samples)."""
        state = self.tracks.setdefault(track, _Track())
        if distance is not None:
            state.distances.append(distance)
            state.frames.append(frame)
            if over:
                for earlier in state.recent:  # the faces since the previous sample, less than N frames back
                    if earlier > frame - self.every:
                        self._mark(state, earlier)
                state.recent.clear()
                self._mark(state, frame)
                state.over_until = frame + self.every - 1
                return
        if frame <= state.over_until:
            self._mark(state, frame)
        elif self.every > 1:
            state.recent.append(frame)
            while len(state.recent) >= self.every:
                state.recent.popleft()

    def _mark(self, state: _Track, frame: int) -> None:
        state.mark(frame)
        self.faces_over += 1

    def protected(self, factors: tuple[float, ...]) -> None:
        """A frame's blend factors as protect set them."""
        self.faces_protected += sum(1 for f in factors if f < 1.0)
        self.faces_source_kept += sum(1 for f in factors if f == 0.0)

    def summary(self, guard: str, recognizer: str, threshold: float | None, every: int, ramp: int) -> IdentitySummary:
        tracks = []
        for track_id, state in sorted(self.tracks.items()):
            if not state.distances:
                continue
            worst = max(range(len(state.distances)), key=state.distances.__getitem__)
            tracks.append(TrackIdentity(track_id, len(state.distances), statistics.median(state.distances),
                                        state.distances[worst], state.frames[worst],
                                        tuple((a, b) for a, b in state.over)))  # fmt: skip
        checked = sum(t.checked for t in tracks)
        return IdentitySummary(guard, recognizer, threshold, every, ramp, checked, self.faces_over,
                               self.faces_protected, self.faces_source_kept, tuple(tracks))  # fmt: skip
