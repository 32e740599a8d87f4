"""Per-run report: what was read, what was written, what the faces stage did, and where time went.

Written as JSON with ``--report`` and summarised in one line at the end of every run, so a batch
operator can tell at a glance whether frames were lost, streams re-encoded or packets damaged.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gpen_video import __version__
from gpen_video.align.fusion import FusionSummary
from gpen_video.config import Config
from gpen_video.faces.quality import TOO_DEGRADED
from gpen_video.faces.selection import SelectionSummary
from gpen_video.faces.track_quality import QUALITY_EVERY, TrackQuality, too_degraded_warning
from gpen_video.faces.types import FacesSummary, TrackSummary
from gpen_video.io.encoding import EncodeSettings
from gpen_video.io.output import atomic_write_text
from gpen_video.io.probe import MediaInfo
from gpen_video.io.reader import ReadStats
from gpen_video.io.writer import WriteResult
from gpen_video.run.frame_path import FaceCrops
from gpen_video.run.identity import IdentitySummary


@dataclass
class StageTimes:
    """Busy seconds per stage (a stage's own work, not time spent waiting), and, where the stages run one after
    another (``count_cpu``: ``run(threaded=False)``, what ``bench/host_bench.py`` measures stage costs with), the
    process CPU seconds each stage used: every thread's, the native pools' (OpenCV, ONNX Runtime) and the stage's
    own workers' included. In a threaded run the stages overlap, so their CPU cannot be told apart."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    count_cpu: bool = False

    def add(self, stage: str, seconds: float, cpu_seconds: float | None = None) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        if cpu_seconds is not None:
            self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + cpu_seconds

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        """Count the block's wall time (and, with ``count_cpu``, its process CPU time) as ``stage``'s."""
        t0, c0 = time.perf_counter(), time.process_time() if self.count_cpu else 0.0
        try:
            yield
        finally:
            cpu = time.process_time() - c0 if self.count_cpu else None
            self.add(stage, time.perf_counter() - t0, cpu)

    def bounding_stage(self) -> str | None:
        return max(self.seconds, key=self.seconds.__getitem__) if self.seconds else None


def host_bound_hint(times: StageTimes, frames: int, device: str) -> str | None:
    """One line where a host stage, not the network, bounds a run on a GPU (``device`` a CUDA one); else None."""
    bound = times.bounding_stage()
    if not device.startswith("cuda") or bound is None or bound == "restore" or not frames:
        return None
    per_frame = {stage: 1000 * seconds / frames for stage, seconds in times.seconds.items()}
    remedy = (
        "measuring fewer faces (--set identity.every=N, the faces of one frame in N) or --identity-guard off"
        if bound == "guard"  # the face recogniser runs on one host core
        else "more cores (--threads), a smaller faces.detect_size or fewer faces (--min-face)"
    )
    return (
        f"the host bounds this GPU run: {bound} is busy {per_frame[bound]:.1f} ms a frame, the network "
        f"{per_frame.get('restore', 0.0):.1f}; {remedy} would feed it faster"
    )


class FlickerMeter:
    """Mean absolute frame-to-frame change inside the face masks, for the input and the output.

    Restorers that re-imagine a face every frame raise the output's figure above the input's; a
    temporally stable restoration keeps them close. Measured on a grey copy at most 480 px wide.
    """

    def __init__(self) -> None:
        self.previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.input_sum = 0.0
        self.output_sum = 0.0
        self.pairs = 0

    def add(self, before: np.ndarray | None, after: np.ndarray | None, mask: np.ndarray | None) -> None:
        """One frame (upright BGR before/after and its paste mask), or Nones for a frame without faces."""
        if before is None or after is None or mask is None:
            self.previous = None
            return
        step = max(1, before.shape[1] // 480)
        scale = np.float32((1.0 / 257.0 if before.dtype == np.uint16 else 1.0) / 3.0)

        def grey(image: np.ndarray) -> np.ndarray:  # the channels' mean (a tenth of ``mean(axis=2)``'s time)
            small = image[::step, ::step]
            total = small[..., 0].astype(np.float32)
            total += small[..., 1]
            total += small[..., 2]
            total *= scale
            return total

        current = (grey(before), grey(after), mask[::step, ::step] > 0.5)
        if self.previous is not None and self.previous[0].shape == current[0].shape:
            both = (current[2] & self.previous[2]).view(np.uint8)
            if cv2.countNonZero(both):
                self.input_sum += cv2.mean(cv2.absdiff(current[0], self.previous[0]), mask=both)[0]
                self.output_sum += cv2.mean(cv2.absdiff(current[1], self.previous[1]), mask=both)[0]
                self.pairs += 1
        self.previous = current

    def summary(self) -> FlickerSummary:
        if not self.pairs:
            return FlickerSummary(None, None, 0)
        return FlickerSummary(round(self.input_sum / self.pairs, 4), round(self.output_sum / self.pairs, 4), self.pairs)


class FaceFlickerMeter:
    """Temporal consistency of the faces: each face's mean absolute change from the frame before, measured in its
    own aligned geometry (the frame warped by its crop transform to ``SIDE`` px, so the face's movement is taken
    out and only what changed on it remains), inside an ellipse over the face; for the input and the output.

    A restorer that invents detail anew each frame raises the output's figure above the input's; fusion and a
    stable restorer bring it below."""

    SIDE = 64

    def __init__(self) -> None:
        self.previous: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.input_sum = 0.0
        self.output_sum = 0.0
        self.pairs = 0
        yy, xx = np.mgrid[0 : self.SIDE, 0 : self.SIDE] + 0.5
        centre = self.SIDE / 2.0
        self.inside = ((xx - centre) / (0.3 * self.SIDE)) ** 2 + ((yy - centre) / (0.36 * self.SIDE)) ** 2 <= 1.0

    def add(self, before: np.ndarray | None, after: np.ndarray | None, faces: FaceCrops | None, size: int) -> None:
        """One frame: the upright images before and after the paste, its aligned faces (None: no face), the crop
        side ``size`` their transforms map to."""
        current: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if before is not None and after is not None and faces is not None:
            zoom = before.shape[1] / faces.frame.shape[1]  # a background upscale: the images are k× the frame
            for affine, track in zip(faces.affines, faces.tracks, strict=True):
                to_side = np.asarray(affine, np.float64) * (self.SIDE / size)
                to_side[:, :2] /= zoom
                current[track] = (self._face(before, to_side), self._face(after, to_side))
                if track in self.previous:
                    was_in, was_out = self.previous[track]
                    self.input_sum += float(np.abs(current[track][0] - was_in)[self.inside].mean())
                    self.output_sum += float(np.abs(current[track][1] - was_out)[self.inside].mean())
                    self.pairs += 1
        self.previous = current

    def _face(self, image: np.ndarray, affine: np.ndarray) -> np.ndarray:
        face = cv2.warpAffine(
            image, affine, (self.SIDE, self.SIDE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
        )
        scale = 1.0 / 257.0 if image.dtype == np.uint16 else 1.0
        return face.astype(np.float32).mean(axis=2) * scale

    def summary(self) -> FlickerSummary:
        if not self.pairs:
            return FlickerSummary(None, None, 0)
        return FlickerSummary(round(self.input_sum / self.pairs, 4), round(self.output_sum / self.pairs, 4), self.pairs)


@dataclass(frozen=True)
class FlickerSummary:
    """The compose stage's flicker figures: mean frame-to-frame change inside the masks, before and after."""

    input: float | None
    output: float | None
    frame_pairs: int


@dataclass(frozen=True)
class RunFaces:
    """The faces section of the report: what the faces stage found, and what restore and compose did with it."""

    found: FacesSummary
    faces_restored: int = 0
    frames_with_faces: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.found.to_dict(), "faces_restored": self.faces_restored,
                "frames_with_faces": self.frames_with_faces}  # fmt: skip


@dataclass(frozen=True)
class RestoreSummary:
    """The restore stage's section of the report: the restorer, where it ran, and the batches it really ran."""

    restorer: str
    batch_size: int
    forward_batch: int  # the most faces one forward really ran (the batch, lowered by an OOM back-off)
    batches: int
    device: str
    precision: str
    device_path: bool


@dataclass
class RunReport:
    input: str
    output: str
    version: str
    restorer: str
    input_info: dict[str, Any]
    encode: dict[str, Any]
    config: dict[str, Any]
    started: float
    host: str = field(default_factory=platform.node)
    frames_read: int = 0
    frames_decoded: int = 0  # includes the pre-roll decoded from the seek point to the range start
    decoder: str = "cpu"  # what decoded the video: cpu | nvdec (``reader.hw_decode``)
    frames_written: int = 0
    damaged_packets: int = 0
    corrupt_frames: int = 0
    streams: list[dict[str, Any]] = field(default_factory=list)
    faces: RunFaces | None = None
    flicker: FlickerSummary | None = None
    # the same, per face in its own aligned geometry (motion taken out), between consecutive frames of a track
    face_flicker: FlickerSummary | None = None
    fusion: FusionSummary | None = None
    selection: SelectionSummary | None = None  # None: every face tracked was restored (no selection rule)
    input_quality: tuple[TrackQuality, ...] = ()  # each track's, measured before restoring (``faces.track_quality``)
    identity: IdentitySummary | None = None  # the identity guard's (``run.identity``)
    restore: RestoreSummary | None = None
    faces_per_second: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)  # only where the stages ran one after another
    bounding_stage: str | None = None
    bounding_ms_per_frame: float | None = None  # the bounding stage's busy ms per frame written
    hint: str | None = None  # one line on what bounds the run, where the host holds a GPU back
    wall_seconds: float = 0.0
    first_decoded_at: float | None = None  # epoch seconds when the first frame was decoded (start-up ends there)
    fps: float = 0.0
    warnings: list[str] = field(default_factory=list)
    # the same tracks, typed, for preview and batch (not written: ``faces["tracks"]`` holds them in the JSON)
    tracks: list[TrackSummary] = field(default_factory=list, repr=False)
    # when the first frame written is shown (seconds; None: none written): a batch segment's first frame, which
    # assembly places the segment file's timeline by
    first_frame_time: Fraction | None = None
    # the video pts written, in ``written_time_base``, in the order written (not in the JSON): a batch segment's,
    # which assembly checks its packets against (the segment is not read back when written)
    written_pts: list[int] = field(default_factory=list, repr=False)
    written_time_base: Fraction | None = None

    @classmethod
    def begin(
        cls, input: Path, output: Path, info: MediaInfo, settings: EncodeSettings, restorer: str, config: Config
    ) -> RunReport:
        return cls(
            input=str(input),
            output=str(output),
            version=__version__,
            restorer=restorer,
            input_info=info.to_dict(),
            encode={
                "codec": settings.codec,
                "pix_fmt": settings.pix_fmt,
                "options": settings.options,
                "reason": settings.reason,
            },
            config=config.to_dict(),
            started=time.time(),
        )

    def finish(
        self,
        read: ReadStats,
        result: WriteResult,
        faces: RunFaces,
        times: StageTimes,
    ) -> None:
        self.tracks = list(faces.found.tracks)
        self.frames_read = read.frames
        self.frames_decoded = read.decoded
        self.decoder = read.decoder
        self.frames_written = result.frames
        self.first_frame_time = result.pts[0] * Fraction(result.time_base) if result.pts else None
        self.written_pts, self.written_time_base = result.pts, Fraction(result.time_base)
        self.damaged_packets = read.damaged_packets
        self.corrupt_frames = read.corrupt_frames
        self.streams = [asdict(p) for p in result.streams]
        self.faces = faces
        self.stage_seconds = {k: round(v, 4) for k, v in times.seconds.items()}
        self.stage_cpu_seconds = {k: round(v, 4) for k, v in times.cpu_seconds.items()}
        self.bounding_stage = times.bounding_stage()
        if self.bounding_stage is not None and self.frames_written:
            self.bounding_ms_per_frame = round(1000 * times.seconds[self.bounding_stage] / self.frames_written, 2)
        self.wall_seconds = round(time.time() - self.started, 3)
        self.fps = round(self.frames_written / self.wall_seconds, 3) if self.wall_seconds > 0 else 0.0
        if read.damaged_packets:
            self.warnings.append(
                f"{read.damaged_packets} damaged packet(s) skipped in the input ({read.first_error}); "
                "the frames they held are missing"
            )
        self.warnings.extend(read.warnings())  # truncation, corrupt frames, repeated pts, size changes
        self.warnings.extend(result.warnings)  # video metadata the output could not keep
        for plan in result.streams:
            if plan.action in ("encode", "drop") or (plan.action == "copy" and plan.reason):  # a copy with a caveat
                self.warnings.append(f"stream #{plan.input_index} ({plan.type}, {plan.codec}): {plan.reason}")
        skipped = faces.found.skipped_faces
        if skipped:
            self.warnings.append(f"{skipped} face detection(s) skipped (too small or too profile to restore)")

    def name_degraded_tracks(self) -> None:
        """A warning naming the tracks restored although too degraded to restore faithfully (after ``finish``)."""
        left_alone = set()
        if self.selection is not None:
            left_alone = {t for t, s in self.selection.tracks.items() if not s.restored}
        warning = too_degraded_warning(self.input_quality, left_alone)
        if warning:
            self.warnings.append(warning)

    def summary(self) -> str:
        faces = self.faces.faces_restored if self.faces else 0
        tracks = len(self.tracks)
        bound = (
            f", bounded by {self.bounding_stage} ({self.bounding_ms_per_frame:.1f} ms/frame)"
            if self.bounding_stage and self.bounding_ms_per_frame is not None
            else ""
        )
        left = sum(self.selection.faces_skipped.values()) if self.selection is not None else 0
        return (
            f"{self.frames_written}/{self.frames_read} frames, {faces} faces in {tracks} tracks"
            + (f" ({left} left alone by the selection)" if left else "")
            + ", "
            + f"{self.wall_seconds:.1f}s ({self.fps:.1f} fps{bound}), video {self.encode['codec']} "
            f"{self.encode['pix_fmt']}" + (f", {len(self.warnings)} warning(s)" if self.warnings else "")
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("tracks", "written_pts", "written_time_base"):
            data.pop(name)
        data["faces"] = self.faces.to_dict() if self.faces is not None else {}
        data["flicker"] = asdict(self.flicker) if self.flicker is not None else {}
        data["face_flicker"] = asdict(self.face_flicker) if self.face_flicker is not None else {}
        data["fusion"] = asdict(self.fusion) if self.fusion is not None else {}
        data["selection"] = self.selection.to_dict() if self.selection is not None else {}
        data["input_quality"] = {"every": QUALITY_EVERY, "too_degraded_under": TOO_DEGRADED,
                                 "tracks": [t.to_dict() for t in self.input_quality]}  # fmt: skip
        data["identity"] = self.identity.to_dict() if self.identity is not None else {}
        data["restore"] = asdict(self.restore) if self.restore is not None else {}
        return data

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str))
