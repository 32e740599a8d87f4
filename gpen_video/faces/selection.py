"""Which tracked faces are restored (``SelectionConfig``): every face of a frame gets a verdict, restored or the
reason it is not, and the faces not restored keep the source's samples exactly.

The rules, in the order they are asked:

- ``--tracks-select FILE``: the track ids listed are restored (or, listed as ``-ID``, skipped);
- ``--min-face-height`` / ``--min-face-score``: a track is restored once its face box has been that tall, its mean
  detection score that high;
- ``--human-check``: a track is left alone where its faces frontal enough to judge (``human_check.HUMAN_FRONTAL``)
  are not human ones (``faces.human_check``: cartoons, animals, faces found in textures): the median score of its
  first ``HUMAN_LOOKS`` such faces, from the first on;
- ``--reference-face`` / ``--exclude-face``: a track is restored only if the recogniser takes it for one of the
  reference people (``faces.recognizers``, by the model's own distance and threshold), and not if it takes it for
  an excluded one; a track is judged on its first face frontal and large enough to tell (``JUDGED_FRONTAL``,
  ``JUDGED_SCALE``), or after ``recheck_frames`` on whatever face it has;
- ``--faces largest`` / ``N``: of the faces the rules above leave, the N whose tracks are largest on average; a
  face takes a chosen one's place only when ``SIZE_MARGIN`` larger, so two faces of a size do not trade it.

**Same pictures in a segment as in the whole run.** What a rule knows of a track starts afresh at each *selection
period*: the sync period of the faces stage (``faces.sync_seconds``) begun ``settle`` frames after its sync frame,
from where a preview, a range or a batch segment has the whole run's faces (``faces.stage.warm_start``). So each
frame's verdicts depend only on frames the segment decoded too. Within a period a decision made holds for the rest
of the track; at a period's start a track is judged again (only a face close to a threshold can change then).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gpen_video.config import SelectionConfig
from gpen_video.errors import ConfigError, InputError
from gpen_video.faces.detectors.base import Detector
from gpen_video.faces.human_check import HUMAN_FRONTAL, HUMAN_LOOKS, HUMAN_MIN_SCORE, HumanFaceCheck
from gpen_video.faces.recognizers.base import Recognizer
from gpen_video.faces.types import TrackedFace, face_scale, frontalness

log = logging.getLogger(__name__)

#: a face is compared with the reference people once it is at least this frontal (0 profile .. 1 frontal) ...
JUDGED_FRONTAL = 0.5
#: ... and its eyes-to-mouth distance at least this many source pixels
JUDGED_SCALE = 12.0
#: a face takes a chosen face's place under ``--faces largest`` / ``N`` only when this much larger on average
SIZE_MARGIN = 1.15

#: why a face was not restored, as the report and the ``--tracks`` rows name it
SKIP_REASONS = (
    "tracks_select", "min_face_height", "min_face_score", "not_human", "not_reference", "excluded", "not_largest"
)  # fmt: skip


@dataclass(frozen=True)
class TrackList:
    """The ids of a ``--tracks-select`` file: those to restore (``keep``, empty: any) and those to skip."""

    keep: frozenset[int]
    skip: frozenset[int]

    @classmethod
    def read(cls, path: str | Path) -> TrackList:
        """One id a line (``-ID``: skip it); ``#`` starts a comment; blank lines and commas are ignored."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the --tracks-select file {path}: {exc}; give a text file of ids") from exc
        keep, skip = set(), set()
        for number, line in enumerate(text.splitlines(), 1):
            for word in line.split("#", 1)[0].replace(",", " ").split():
                negative = word.startswith("-")
                if not word.lstrip("-").isdigit():
                    raise ConfigError(
                        f"{path}:{number}: '{word}' is not a track id; write one id a line (-ID to skip it)"
                    )
                (skip if negative else keep).add(int(word.lstrip("-")))
        if not keep and not skip:
            raise ConfigError(f"{path} lists no track id; write one id a line (-ID to skip it)")
        return cls(frozenset(keep), frozenset(skip))

    def reason(self, track_id: int) -> str | None:
        if track_id in self.skip or (self.keep and track_id not in self.keep):
            return "tracks_select"
        return None


@dataclass(frozen=True)
class People:
    """The reference and excluded people's embeddings (``--reference-face``, ``--exclude-face``)."""

    recognizer: Recognizer
    references: np.ndarray  # (R, D)
    excluded: np.ndarray  # (E, D)

    @classmethod
    def from_images(
        cls, recognizer: Recognizer, detector: Detector, references: tuple[str, ...], excluded: tuple[str, ...]
    ) -> People:
        def embedded(paths: tuple[str, ...]) -> np.ndarray:
            rows = [recognizer.embed(*_largest_face(Path(p), detector)) for p in paths]
            return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)

        return cls(recognizer, embedded(references), embedded(excluded))

    def judge(self, image: np.ndarray, face: TrackedFace) -> tuple[str | None, float]:
        """(the reason the face is not restored or None, its distance to the nearest reference or excluded face)."""
        embedding = self.recognizer.embed(image, face.landmarks5[None])
        nearest = np.inf
        if len(self.excluded):
            nearest = float(self.recognizer.distance(embedding, self.excluded).min())
            if nearest <= self.recognizer.threshold:
                return "excluded", nearest
        if len(self.references):
            nearest = float(self.recognizer.distance(embedding, self.references).min())
            if nearest > self.recognizer.threshold:
                return "not_reference", nearest
        return None, nearest


def _largest_face(path: Path, detector: Detector) -> tuple[np.ndarray, np.ndarray]:
    """(image, (1, 5, 2) landmarks) of the largest face in the image at ``path``."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if image is None:
        raise InputError(f"cannot read the face image {path}; give a JPEG or PNG photo of the person")
    found = detector.detect(image)
    if not len(found):
        raise InputError(f"no face found in {path}; give a photo where the face is frontal and at least 40 px tall")
    largest = int(np.argmax(face_scale(found.landmarks)))
    return image, found.landmarks[largest : largest + 1]


@dataclass
class _TrackState:
    """What the rules know of one track in the current selection period."""

    first: int  # the frame it was first seen in, in this period
    frames: int = 0
    score_sum: float = 0.0
    height_sum: float = 0.0
    tall_enough: bool = False
    scored_enough: bool = False
    identity: str | None = None  # the identity rules' reason not to restore it, once judged
    judged: bool = False
    distance: float | None = None
    human: bool | None = None  # None: not judged yet (no face frontal enough in this period)
    human_score: float | None = None  # the median of its looks so far
    human_scores: list[float] = field(default_factory=list)


@dataclass
class TrackSelection:
    """What happened to one track over the run (the report's per-track line)."""

    restored: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    distance: float | None = None
    human_score: float | None = None  # the human check's score, where it judged the track

    def describe(self) -> str:
        """A few words: restored, left alone and why, or both with the frames of each."""
        if not self.skipped:
            return "restored"
        why = ", ".join(reason.replace("_", " ") for reason, _ in self.skipped.most_common())
        if not self.restored:
            return f"left alone: {why}"
        return f"restored {self.restored}/{self.restored + self.skipped.total()} frames; else {why}"


@dataclass(frozen=True)
class SelectionSummary:
    """The report's ``selection`` section: the rules in force and what they did, overall and per track."""

    rules: str
    faces_restored: int
    faces_skipped: dict[str, int]
    tracks: dict[int, TrackSelection]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            "faces_restored": self.faces_restored,
            "faces_skipped": dict(sorted(self.faces_skipped.items())),
            "tracks": [
                {
                    "id": track_id,
                    "restored_frames": t.restored,
                    "skipped_frames": dict(sorted(t.skipped.items())),
                    **({} if t.distance is None else {"reference_distance": round(t.distance, 4)}),
                    **({} if t.human_score is None else {"human_score": round(t.human_score, 3)}),
                }
                for track_id, t in sorted(self.tracks.items())
            ],
        }


def face_selector(config: SelectionConfig, detector: Detector, recognizer: str = "auto") -> FaceSelector | None:
    """The run's selector (None: every face is restored), its reference images read and its track list checked
    before any frame is."""
    human = _human_check(config.human_check)
    people = None
    if config.reference_faces or config.exclude_faces:
        from gpen_video.faces.recognizers import create_recognizer

        people = People.from_images(create_recognizer(recognizer), detector, config.reference_faces,
                                    config.exclude_faces)  # fmt: skip
    tracks = TrackList.read(config.tracks_select) if config.tracks_select else None
    selector = FaceSelector(config, people, tracks, human)
    return selector if selector.active else None


def _human_check(setting: str) -> HumanFaceCheck | None:
    """The human-face check ``selection.human_check`` asks for: on (dlib must be there), auto (where it is), off."""
    if setting == "off":
        return None
    from gpen_video.faces.recognizers.dlib_resnet import dlib_available

    if setting == "auto" and not dlib_available():
        log.info("human-face check off: dlib is not installed (pip install 'gpen-video[identity]')")
        return None
    return HumanFaceCheck()


class FaceSelector:
    """Verdicts for each frame's faces, frame by frame in order (``choose``)."""

    def __init__(
        self,
        config: SelectionConfig,
        people: People | None = None,
        tracks: TrackList | None = None,
        human: HumanFaceCheck | None = None,
    ):
        self.config = config
        self.people = people
        self.tracks = tracks
        self.human = human
        self.limit = 0 if config.faces == "all" else 1 if config.faces == "largest" else int(config.faces)
        self.state: dict[int, _TrackState] = {}
        self.chosen: set[int] = set()  # ``--faces``: the tracks chosen in the frame before
        self.totals: dict[int, TrackSelection] = {}

    @property
    def active(self) -> bool:
        """Whether any rule can leave a face out (else every face is restored and nothing is counted)."""
        c = self.config
        return bool(self.limit or c.min_face_height or c.min_face_score or self.people or self.tracks or self.human)

    def new_period(self) -> None:
        """A selection period begins: every track is judged afresh from here."""
        self.state.clear()
        self.chosen.clear()

    def choose(self, index: int, faces: list[TrackedFace], image: np.ndarray, counted: bool) -> list[str | None]:
        """Each face's verdict in frame ``index`` (None: restored; else why not), ``image`` the frame's picture;
        ``counted`` False: a frame a range decodes around those it writes (judged, not in the summary)."""
        reasons = [self._rules(index, face, image) for face in faces]
        if self.limit:
            reasons = self._largest(faces, reasons)
        for face, reason in zip(faces, reasons, strict=True) if counted else ():
            totals = self.totals.setdefault(face.track_id, TrackSelection())
            if reason is None:
                totals.restored += 1
            else:
                totals.skipped[reason] += 1
            state = self.state[face.track_id]
            totals.distance = state.distance if state.distance is not None else totals.distance
            totals.human_score = state.human_score if state.human_score is not None else totals.human_score
        return reasons

    def _rules(self, index: int, face: TrackedFace, image: np.ndarray) -> str | None:
        state = self.state.setdefault(face.track_id, _TrackState(first=index))
        state.frames += 1
        state.score_sum += face.score
        height = float(face.box[3] - face.box[1])
        state.height_sum += height
        state.tall_enough |= height >= self.config.min_face_height
        state.scored_enough |= state.score_sum / state.frames >= self.config.min_face_score
        if self.tracks is not None and self.tracks.reason(face.track_id):
            return "tracks_select"
        if not state.tall_enough:
            return "min_face_height"
        if not state.scored_enough:
            return "min_face_score"
        if self.human is not None and self._human(state, face, image) is False:
            return "not_human"
        if self.people is None:
            return None
        if not state.judged and (self._judgeable(face) or index - state.first >= self.config.recheck_frames):
            state.identity, state.distance = self.people.judge(image, face)
            state.judged = True
        if not state.judged:  # not yet told: a reference face waits, any other is restored meanwhile
            return "not_reference" if len(self.people.references) else None
        return state.identity

    def _human(self, state: _TrackState, face: TrackedFace, image: np.ndarray) -> bool | None:
        """Whether the track's face is human: the median score of its first ``HUMAN_LOOKS`` faces frontal enough
        in the period (``HUMAN_FRONTAL``), from the first of them on; held once they are all in."""
        looks = state.human_scores
        if self.human is not None and len(looks) < HUMAN_LOOKS and frontalness(face.landmarks5) >= HUMAN_FRONTAL:
            looks.append(self.human.score(image, face.landmarks5))
            state.human_score = float(np.median(looks))
            state.human = state.human_score >= HUMAN_MIN_SCORE
        return state.human

    @staticmethod
    def _judgeable(face: TrackedFace) -> bool:
        lm = face.landmarks5
        return bool(frontalness(lm) >= JUDGED_FRONTAL and face_scale(lm) >= JUDGED_SCALE)

    def _largest(self, faces: list[TrackedFace], reasons: list[str | None]) -> list[str | None]:
        """Of the faces still restored, the ``limit`` whose tracks are largest (a chosen one kept unless clearly
        outgrown); the others ``not_largest``."""
        candidates = [face.track_id for face, reason in zip(faces, reasons, strict=True) if reason is None]

        def size(track_id: int) -> tuple[float, int]:
            state = self.state[track_id]
            mean = state.height_sum / state.frames
            return (mean * (SIZE_MARGIN if track_id in self.chosen else 1.0), -state.first)

        kept = set(sorted(candidates, key=size, reverse=True)[: self.limit])
        self.chosen = kept
        return [
            reason if reason is not None else None if face.track_id in kept else "not_largest"
            for face, reason in zip(faces, reasons, strict=True)
        ]

    def summary(self) -> SelectionSummary:
        skipped: Counter[str] = Counter()
        for totals in self.totals.values():
            skipped.update(totals.skipped)
        restored = sum(t.restored for t in self.totals.values())
        return SelectionSummary(self.config.describe(), restored, dict(skipped), dict(self.totals))
