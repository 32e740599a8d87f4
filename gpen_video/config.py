"""One typed configuration object, and every option's allowed values, declared once.

A run's settings come from a preset in ``configs/`` (or a YAML file the user names), then CLI flags
override single fields by dotted name (``output.crf``); a batch manifest row does the same per file.
All three pass one gate, ``load_config``: each field's type annotation says what it takes, and its
``Annotated`` extras say the limits (``Range``, ``Choice``, ``Match``; a ``Literal`` is a closed set),
the command-line flag that sets it (``Flag``), and how the batch job treats it (``PerJob``,
``Neutral``). The CLI builds its flags, ``choices`` and help from the same declaration, so a new option
with its limits is one line in its section::

    min_face: Annotated[int, Range(1), Flag("--min-face", "smallest face restored (px)")] = 16

The stages never see a loose dict or a string where a number belongs, and nothing downstream needs
to check a limit again.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from gpen_video.errors import ConfigError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"
PACKAGED_PRESETS_DIR = Path(__file__).resolve().parent / "presets"


# ---------------------------------------------------------------------------------------------------
# The vocabulary of a declaration


@dataclass(frozen=True)
class Range:
    """A number's limits: ``Range(0, 1)``, ``Range(0)`` (0 or more), ``Range(above=0)`` (more than 0)."""

    low: float | None = None
    high: float | None = None
    above: float | None = None  # exclusive lower limit

    def problem(self, value: float) -> str | None:
        low_ok = (self.low is None or value >= self.low) and (self.above is None or value > self.above)
        return None if low_ok and (self.high is None or value <= self.high) else f"must be {self.describe()}"

    def describe(self) -> str:
        if self.above is not None:
            return f"more than {self.above:g}" + (f" and at most {self.high:g}" if self.high is not None else "")
        if self.low is not None and self.high is not None:
            return f"between {self.low:g} and {self.high:g}"
        if self.low is not None:
            return f"{self.low:g} or more"
        return f"{self.high:g} or less" if self.high is not None else "any number"


@dataclass(frozen=True)
class Choice:
    """One of ``names``, or a file path ending in one of ``paths`` (``Choice("auto", "mtcnn", paths=(".onnx",))``)."""

    names: tuple[str, ...]
    paths: tuple[str, ...] = ()

    def __init__(self, *names: str, paths: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "paths", paths)

    def problem(self, value: str) -> str | None:
        if value in self.names or (self.paths and value.lower().endswith(self.paths)):
            return None
        return f"must be {self.describe()}"

    def describe(self) -> str:
        files = f" or a {'/'.join(self.paths)} file" if self.paths else ""
        return f"one of {', '.join(self.names)}{files}"


@dataclass(frozen=True)
class Match:
    """A string matching ``pattern`` (whole), described to the user as ``description``."""

    pattern: str
    description: str
    example: str  # a value that matches (what the limit tests set)

    def problem(self, value: str) -> str | None:
        return None if re.fullmatch(self.pattern, value) else f"must be {self.description}"

    def describe(self) -> str:
        return self.description


@dataclass(frozen=True)
class Flag:
    """The command-line flag that sets a field. ``parse`` converts its text (default: the field's own
    conversion in ``load_config``); ``invert`` makes a flag such as ``--no-smooth`` set a bool to False."""

    name: str
    help: str = ""
    parse: Callable[[str], Any] | None = None
    invert: bool = False
    metavar: str | None = None
    repeat: bool = False  # the flag may be given several times; the field is a tuple of its values

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


class PerJob:
    """Set once for a whole batch job (``--overwrite``, ``--start``): a manifest row may not set it per file."""


class FileNamed:
    """Names a file (or files): a batch manifest's relative path is taken from the manifest's folder, as its inputs."""


class Neutral:
    """Changes no output byte (or is read by nothing yet): left out of the batch job's settings hash."""


Constraint = Range | Choice | Match


def parse_seconds(text: str) -> float:
    """``90``, ``90.5``, ``01:30``, ``00:01:30.500`` -> seconds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    match = re.fullmatch(r"(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not a time; use seconds (12.5) or HH:MM:SS[.ms]")
    hours, minutes, seconds = match.groups()
    if int(minutes) >= 60 or float(seconds) >= 60:
        raise argparse.ArgumentTypeError(f"'{text}': minutes and seconds must be below 60")
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


# ---------------------------------------------------------------------------------------------------
# Named sets of values that more than one place needs

X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")  # fmt: skip
SVTAV1_PRESETS = tuple(str(n) for n in range(14))
X26xPreset = Literal[X26X_PRESETS]  # type: ignore[valid-type]
EncoderPreset = Literal[X26X_PRESETS + SVTAV1_PRESETS]  # type: ignore[valid-type]
Precision = Literal["auto", "fp32", "fp16", "bf16"]
DETECTOR_NAMES = ("auto", "mtcnn", "scrfd", "retinaface")
CompareMode = Literal["side", "split", "none"]  # `preview --compare`
COMPARE_MODES: tuple[str, ...] = typing.get_args(CompareMode)
DEVICE = Match(r"auto|cpu|(cuda|tensorrt)(:\d+)?", "auto, cpu, cuda, cuda:N or tensorrt[:N]", "cpu")
Fraction01 = Annotated[float, Range(0, 1)]
Count = Annotated[int, Range(0)]


# ---------------------------------------------------------------------------------------------------
# The options, one line each. Sections are the stages that own them.


@dataclass
class ReaderConfig:
    """Decoding."""

    threads: Annotated[Count, Neutral] = 0  # 0: let FFmpeg choose
    strict: Annotated[bool, Flag("--strict", "fail on damaged packets instead of skipping them")] = False
    deinterlace: Annotated[
        Literal["keep", "progressive", "frame", "off"],
        Flag("--deinterlace", "interlaced input: keep (restore per field, weave back), progressive, frame, off"),
    ] = "keep"
    field_order: Annotated[
        Literal["auto", "tff", "bff"],
        Flag("--field-order", "field order of interlaced input (auto: the tag, else judged on the first pictures)"),
    ] = "auto"
    # the video decoded on the GPU (``io.hw_decode``): auto (NVDEC when the restorer runs on CUDA), nvdec, off; where
    # NVDEC cannot decode the codec or no CUDA device opens, the CPU decodes, said in one logged line
    hw_decode: Annotated[
        Literal["auto", "nvdec", "off"], Flag("--hw-decode", "decode on the GPU: auto (on a CUDA run), nvdec, off")
    ] = "auto"


def parse_rate(text: str) -> float:
    """``24``, ``23.976``, ``24000/1001`` -> frames per second."""
    try:
        return float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a frame rate; use 24, 23.976 or 24000/1001") from None


@dataclass
class InputConfig:
    """Image sequences and stills (film scans)."""

    fps: Annotated[
        float, Range(above=0, high=1000), Flag("--fps", "frame rate of an image sequence (24000/1001 too)", parse_rate)
    ] = 24.0
    audio: Annotated[str | None, Flag("--audio", "WAV file muxed in sync with an image sequence (video output)")] = None
    allow_gaps: Annotated[bool, Flag("--allow-gaps", "go on past a sequence's missing frames (with a warning)")] = False


@dataclass
class OutputConfig:
    """Encoding and muxing."""

    video_codec: Annotated[
        str, Flag("--video-codec", "auto (default), libx264, libx265, prores_ks, ffv1, dnxhd, ...")
    ] = "auto"
    crf: Annotated[int | None, Range(0, 63), Flag("--crf", "quality for x264/x265 (auto: 16), AV1, VP9")] = None
    preset: Annotated[
        EncoderPreset | None, Flag("--preset", "x264/x265 (or SVT-AV1) speed preset; refused for encoders without one")
    ] = None
    x26x_preset: X26xPreset = "slow"  # used when the encoder turns out to be x264/x265 and no --preset is given
    x26x_crf: Annotated[int, Range(0, 51)] = 16  # likewise, when no --crf is given
    pix_fmt: Annotated[str, Flag("--pix-fmt", "output pixel format (auto: the source's)")] = "auto"
    encoder_backend: Annotated[
        Literal["pyav", "ffmpeg"], Flag("--encoder-backend", "ffmpeg: pipe to your own ffmpeg binary")
    ] = "pyav"
    ffmpeg_binary: Annotated[
        str | None,
        Flag("--ffmpeg-binary", "ffmpeg for --encoder-backend ffmpeg (default: PATH, then imageio-ffmpeg's)"),
    ] = None
    overwrite: Annotated[bool, Neutral, PerJob, Flag("--overwrite", "replace an existing output")] = False


@dataclass
class FacesConfig:
    """Detection, tracking and landmark smoothing."""

    detector: Annotated[str, Choice(*DETECTOR_NAMES, paths=(".onnx",)), Flag("--detector", "face detector")] = "auto"
    score_threshold: Fraction01 = 0.8
    # faces narrower than this (detector box side, source px) are skipped; found at any frame size
    min_face: Annotated[int, Range(1), Flag("--min-face", "smallest face restored (detector box side, source px)")] = 16
    max_faces: Count = 0  # 0: no limit; else the largest N per frame
    keyframe_interval: Annotated[int, Range(1)] = 8  # full detection at least every N frames
    # a confirmed face the measured motion follows reliably is refined (ONet's looks) once in N frames; between,
    # the smoothing carries its neighbours' observations there by the motion, as over a bridged gap (smoothed runs
    # only: --no-smooth refines every face every frame)
    refine_every: Annotated[int, Range(1, 4)] = 2
    # the small-face pass covers the whole frame at least every N frames (in bands over key frames when N holds
    # several): a face coming into view is found within it, and tracked a few frames later
    small_face_sweep: Annotated[int, Range(1)] = 8
    # between whole-frame sweeps (a shot's first frame, sync frames, a lost track, every 12th key frame), a key
    # frame searches only where the picture changed since the detector last looked (the camera's motion taken out)
    # and around the tracked faces: changed | whole (every key frame searches the whole frame)
    keyframe_search: Literal["changed", "whole"] = "changed"
    scene_threshold: Annotated[float, Range(0, 255)] = 27.0  # PySceneDetect ContentDetector threshold; 0: off
    # every this many seconds of source time the tracks start afresh from a full detection (faces followed on,
    # smoothed across the seam), so what the tracker finds there depends on no frame a few seconds earlier: a
    # preview, a --start or a batch segment warms up from the sync frame before its start and comes out as the
    # whole run does. 0: never (the tracker remembers the whole shot; previews and segments then differ a little)
    sync_seconds: Annotated[float, Range(0, 3600)] = 4.0
    smooth: Annotated[bool, Flag("--no-smooth", "no temporal landmark smoothing (to compare)", invert=True)] = True
    smooth_window: Count = 9  # frames each side (zero-phase, look-ahead, motion-compensated)
    smooth_strength: Fraction01 = 1.0
    # points: the five landmarks | similarity: their alignment (rotation, scale, shift)
    smooth_target: Literal["points", "similarity"] = "points"
    min_track_length: Annotated[int, Range(1)] = 3  # observations before a face is restored (fewer in a shorter shot)
    confirm_score: Fraction01 = 0.95  # a new face's best full-detection score must reach this to become a track
    max_gap: Count = 4  # frames a track may be lost and still be bridged with the measured motion
    detect_size: Count = 960  # long side (px) of the copy the coarse detector pass runs on; 0: full resolution
    min_frontal: Fraction01 = 0.3  # faces more in profile than this (0 profile .. 1 frontal) are skipped
    min_scene_len: Count = 8  # frames; cuts closer than this to the previous one are ignored
    detector_threads: Count = 0  # ONNX Runtime threads for the detector; 0: a quarter of the cores
    # where the embedded MTCNN's networks run: auto (on the restorer's GPU when the frames stay there, the device
    # path; else the CPU) | cpu | cuda (the restorer's CUDA device, or the current one)
    detector_device: Literal["auto", "cpu", "cuda"] = "auto"
    tracks: Annotated[str | None, Neutral, Flag("--tracks", "write every face of every frame here (JSON lines)")] = None


@dataclass
class SelectionConfig:
    """Which tracked faces are restored (``faces.selection``): the rest are left exactly as the source has them.

    Every rule is decided per track, in frame order, and a decision once made holds for the rest of the track, so a
    face is never switched on and off from frame to frame; the one exception is ``faces: largest`` / ``N``, where a
    larger face coming in takes the place over (with a margin, so two faces of a size do not trade it back and forth).
    """

    faces: Annotated[
        str,
        Match(r"all|largest|[1-9][0-9]*", "all, largest or a number of faces", "largest"),
        Flag("--faces", "which faces: all, largest, or the N largest of each frame (by their track's size)"),
    ] = "all"
    min_face_height: Annotated[
        Count, Flag("--min-face-height", "restore a track once its face box is this tall (source px; 0: any)")
    ] = 0
    min_face_score: Annotated[
        Fraction01, Flag("--min-face-score", "restore a track once its mean detection score reaches this")
    ] = 0.0
    reference_faces: Annotated[
        tuple[str, ...],
        FileNamed,
        Flag("--reference-face", "restore only the tracks of the person in this image (repeatable)", repeat=True),
    ] = ()
    exclude_faces: Annotated[
        tuple[str, ...],
        FileNamed,
        Flag("--exclude-face", "leave the tracks of the person in this image alone (repeatable)", repeat=True),
    ] = ()
    tracks_select: Annotated[
        str | None,
        FileNamed,
        Flag("--tracks-select", "a file of track ids: restore only those listed, or skip those listed as -ID"),
    ] = None
    # leave faces alone that are not human (a cartoon, an animal, a face found in a texture): dlib's HOG face detector
    # judges each track (``faces.human_check``); auto: where dlib is installed (the identity extra)
    human_check: Annotated[
        Literal["auto", "on", "off"], Flag("--human-check", "leave non-human faces (cartoons, animals) alone")
    ] = "auto"
    # a track is compared with the reference and excluded faces on its first face frontal and large enough to tell
    # (``faces.selection.JUDGED_*``), or, where it has none, after this many frames on the face it has then
    recheck_frames: Annotated[int, Range(1)] = 12

    def describe(self) -> str:
        """One line for ``probe --plan``."""
        rules = [] if self.faces == "all" else [f"the {self.faces} face(s) of each frame" if self.faces != "largest"
                                                 else "the largest face of each frame"]  # fmt: skip
        if self.min_face_height:
            rules.append(f"tracks whose face reaches {self.min_face_height} px")
        if self.min_face_score:
            rules.append(f"tracks whose mean score reaches {self.min_face_score:g}")
        if self.reference_faces:
            rules.append(f"only the person(s) of {', '.join(self.reference_faces)}")
        if self.exclude_faces:
            rules.append(f"not the person(s) of {', '.join(self.exclude_faces)}")
        if self.tracks_select:
            rules.append(f"the track ids of {self.tracks_select}")
        if self.human_check != "off":
            rules.append("human faces only" + (" (where dlib is installed)" if self.human_check == "auto" else ""))
        return "faces restored: " + ("; ".join(rules) if rules else "all tracked faces")


@dataclass
class AlignConfig:
    """Warping faces to the model's template and back."""

    template: Literal["auto", "gpen", "ffhq", "arcface_128"] = "auto"  # auto: the one the model was made with


@dataclass
class FusionConfig:
    """Multi-frame fusion along each track: a face's neighbours (t-R..t+R) registered to frame t and merged
    where they agree with it, before the restorer sees the crop (``align.fusion``)."""

    frames: Annotated[
        int, Range(0, 8), Flag("--fusion-frames", "neighbours each side fused into each face (0: off)")
    ] = 0
    strength: Annotated[Fraction01, Flag("--fusion-strength", "how far the fused face replaces the frame's own")] = 1.0

    def describe(self) -> str:
        """One line for ``probe --plan``."""
        if self.frames == 0:
            return "fusion: off (fusion.frames 0): each face is restored from its own frame alone"
        return f"fusion: {self.frames} frame(s) each side of each face along its track, strength {self.strength:g}"


@dataclass
class IdentityConfig:
    """The identity guard: is each restored face still the source's person, by a face recogniser's distance between
    the source crop and the restored one (``run.guard_stage``)."""

    guard: Annotated[
        Literal["off", "warn", "protect"],
        Flag("--identity-guard", "restored faces that are another person: off, warn (report, stderr), protect (keep "
             "the source face there)"),
    ] = "warn"  # fmt: skip
    threshold: Annotated[
        float,
        Range(0),
        Flag("--identity-threshold", "face distance over which a restored face is another person (0: the "
             "recogniser's own)"),
    ] = 0.0  # fmt: skip
    recognizer: Annotated[
        str,
        Choice("auto", "dlib", "arcface", paths=(".onnx",)),
        Flag("--identity-recognizer", "face recogniser the guard measures with (auto: dlib, else ArcFace)"),
    ] = "auto"
    # the faces of one frame in N (by its number in the source) are measured; the faces between a distant one and its
    # track's measured neighbours count as distant too. dlib's two embeddings cost about 170 CPU ms a measured face on
    # one core, and dlib holds Python's lock, so they run one at a time: 14 times the faces stage's cost per face-frame
    # at N 1, about its cost (14 ms) at N 12. A restorer that changes a degraded person does so on every frame of the
    # track, and any change lasting N frames or more is found (a 4-frame swap: at N 1, 2, 4, not at 8 or 12;
    # bench/guard_bench.py)
    every: Annotated[int, Range(1, 100)] = 12
    ramp: Annotated[int, Range(0, 100)] = 8  # protect: frames each side over which the blend falls to 0 and back
    # worker processes the embeddings run in (dlib holds Python's lock: in the guard's thread they run one at a time
    # and hold up the other stages' Python); -1: a quarter of the cores (none, in the guard's thread, under 4)
    processes: Annotated[int, Range(-1, 64)] = -1

    @property
    def reach(self) -> int:
        """Frames each side of a face whose measurements its blend can depend on under protect (``run.blend_ramp``):
        a distant sample that far away still lowers it."""
        return self.ramp + self.every - 1

    def context_frames(self) -> int:
        """Frames each side of a range (a preview, a batch segment) restored and measured, not written, so that the
        range's faces get the whole run's blend: ``reach`` under protect, else none."""
        return self.reach if self.guard == "protect" else 0

    def describe(self, recognizer: str | None, threshold: float | None) -> str:
        """One line for ``probe --plan``: the guard in force with ``recognizer`` (None: none installed)."""
        if self.guard == "off":
            return "identity guard: off (identity.guard off): restored faces are not checked against the source"
        if recognizer is None and self.guard == "protect":
            return (
                "identity guard: protect needs a face recogniser and none is installed: a run stops before any "
                "work (pip install 'gpen-video[identity]')"
            )
        if recognizer is None:
            return (
                f"identity guard: off (identity.guard {self.guard}, but no face recogniser is installed: "
                "pip install 'gpen-video[identity]')"
            )
        sampled = "every face" if self.every == 1 else f"the faces of one frame in {self.every}"
        action = "warns of" if self.guard == "warn" else f"keeps the source face (ramp {self.ramp} frames) for"
        return (
            f"identity guard: {self.guard}: {recognizer} compares {sampled} with its source and {action} "
            f"distances over {threshold:g}"
        )


@dataclass
class ComposeConfig:
    """Pasting restored faces back into the frame."""

    blend: Annotated[Fraction01, Flag("--blend", "weight of the restored face (GPEN's alpha)")] = 0.8
    color_match: bool = True
    mask_erode: Annotated[float, Range(0, 0.5)] = 0.04  # fraction of the crop size
    mask_blur: Annotated[float, Range(0, 0.5)] = 0.08  # fraction of the crop size
    parsing_model: str | None = None
    upscale: Annotated[Literal[1, 2, 4], Flag("--upscale", "background upscale factor (faces pasted at that size)")] = 1
    upscaler: Annotated[
        Literal["lanczos", "realesrgan-x2", "realesrgan-x4", "realesrnet-x2", "realesrnet-x4"],
        Flag("--upscaler", "background upscaler (its xN must match --upscale)"),
    ] = "lanczos"
    upscale_tile: Annotated[int, Range(0, 2048)] = 256  # network tile side (px); 0: whole frame; else 64 or more
    grain: Annotated[Literal["off", "match"], Flag("--grain", "add grain matched to the source to restored faces")] = (
        "off"
    )


@dataclass
class RestoreConfig:
    """The restoring model and where it runs."""

    model: Annotated[
        str, Flag("--model", "gpen-bfr-2048 (default), gpen-bfr-1024/512/256, a .pth/.onnx path, or identity")
    ] = "gpen-bfr-2048"
    device: Annotated[str, DEVICE, Flag("--device", "where the model runs (tensorrt for .onnx models)")] = "auto"
    precision: Annotated[Precision, Flag("--precision", "network precision (auto: bf16 on GPUs that have it)")] = "auto"
    batch_size: Annotated[Count, Flag("--batch-size", "faces per restore batch (0: from device memory)")] = 0
    weights_dir: Annotated[str | None, Flag("--weights-dir", "where model files are looked for first")] = None
    identity_size: Annotated[int, Range(8, 4096)] = 512  # crop side of the identity restorer
    compile: Annotated[bool, Flag("--compile", "torch.compile the network (GPU runs of some length)")] = False
    device_path: Literal["auto", "on", "off"] = "auto"  # auto: frames stay on the GPU on CUDA


@dataclass
class Config:
    """Everything one run needs to know."""

    reader: ReaderConfig = field(default_factory=ReaderConfig)
    input: InputConfig = field(default_factory=InputConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    restore: RestoreConfig = field(default_factory=RestoreConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    start: Annotated[
        float | None, Range(0), PerJob, Flag("--start", "start time: seconds or HH:MM:SS[.ms]", parse_seconds)
    ] = None
    duration: Annotated[
        float | None,
        Range(above=0),
        PerJob,
        Flag("--duration", "how much to process: seconds or HH:MM:SS[.ms]", parse_seconds),
    ] = None
    # host worker threads of the faces stage (each face's motion, each look of a key frame) and of compose (frames);
    # the output is the same for any number. 0: all cores but the decode and encode threads
    threads: Annotated[Count, Neutral, Flag("--threads", "host worker threads (0: all cores but two)")] = 0

    def context_frames(self) -> int:
        """Frames each side of a frame that its picture depends on beyond its faces: fusion's neighbours, and the
        guard's measurements under protect. A range or a segment decodes that much more each side."""
        return self.fusion.frames + self.identity.context_frames()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hashed_dict(self) -> dict[str, Any]:
        """``to_dict`` less the ``Neutral`` fields: what a batch job's settings hash is made of."""
        data = self.to_dict()
        for option in options(Config):
            if option.neutral:
                *parents, leaf = option.dotted.split(".")
                node = data
                for parent in parents:
                    node = node[parent]
                node.pop(leaf, None)
        return data


@dataclass
class JobSettings:
    """The options of a whole ``batch`` job (not per file, not part of ``Config``)."""

    engine: Annotated[Literal["local", "ray"], Flag("--engine", "local (default) or a Ray cluster")] = "local"
    address: Annotated[
        str | None, Flag("--address", "Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    ] = None
    workers: Annotated[
        int | None, Range(1), Flag("--workers", "Ray workers (default: one per GPU, or per CPU on CPU)")
    ] = None
    segment_seconds: Annotated[
        float,
        Range(0),
        Flag(
            "--segment-seconds",
            "restore long inputs in segments of about this many seconds, cut on key frames (0: whole files)",
        ),
    ] = 60.0
    overlap_frames: Annotated[
        int | None, Range(0), Flag("--overlap-frames", "warm-up frames before each segment (default: the look-ahead)")
    ] = None


# ---------------------------------------------------------------------------------------------------
# Reading the declaration


@dataclass(frozen=True)
class Option:
    """One declared field: its dotted name, value type, limits and flag."""

    dotted: str
    base: Any  # bool, int, float, str or a Literal
    optional: bool  # None is allowed
    default: Any
    constraints: tuple[Constraint, ...]
    flag: Flag | None
    per_job: bool
    neutral: bool
    file_named: bool = False

    @property
    def choices(self) -> tuple[Any, ...]:
        """The allowed values of a closed set (``Literal``), else ()."""
        return typing.get_args(self.base) if typing.get_origin(self.base) is Literal else ()

    def describe(self) -> str:
        """The limits in words, for help text ('' when any value of the type will do)."""
        parts = [c.describe() for c in self.constraints]
        if self.choices:
            parts.append(f"one of {', '.join(map(str, self.choices))}")
        return "; ".join(parts)


def _unpack(annotation: Any) -> tuple[Any, bool, tuple[Any, ...]]:
    """(base type, optional, Annotated extras) of a field annotation."""
    extras: tuple[Any, ...] = ()
    if typing.get_origin(annotation) is Annotated:
        annotation, *more = typing.get_args(annotation)
        extras = tuple(more)
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(inner) < len(typing.get_args(annotation))
        if len(inner) != 1:
            raise TypeError(f"a config field takes one type (or it and None), not {annotation}")
        annotation = inner[0]
        if typing.get_origin(annotation) is Annotated:  # Optional[Annotated[...]]
            annotation, *more = typing.get_args(annotation)
            extras += tuple(more)
    return annotation, optional, extras


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


@functools.cache
def _section_options(cls: type) -> dict[str, Option]:
    result: dict[str, Option] = {}
    for f in dataclasses.fields(cls):
        base, optional, extras = _unpack(_hints(cls)[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        result[f.name] = Option(
            dotted=f.name,
            base=base,
            optional=optional,
            default=default,
            constraints=tuple(e for e in extras if isinstance(e, (Range, Choice, Match))),
            flag=next((e for e in extras if isinstance(e, Flag)), None),
            per_job=any(e is PerJob for e in extras),
            neutral=any(e is Neutral for e in extras),
            file_named=any(e is FileNamed for e in extras),
        )
    return result


def options(cls: type = Config, prefix: str = "") -> Iterator[Option]:
    """Every leaf option of a declaration (``Config`` or ``JobSettings``), in declaration order."""
    for f in dataclasses.fields(cls):
        base = _section_options(cls)[f.name]
        if isinstance(base.base, type) and dataclasses.is_dataclass(base.base):
            yield from options(base.base, f"{prefix}{f.name}.")
        else:
            yield dataclasses.replace(base, dotted=prefix + f.name)


def flag_fields(cls: type = Config) -> dict[str, Option]:
    """Flag destination (``batch_size``) -> option, for the options that have a flag."""
    return {o.flag.dest: o for o in options(cls) if o.flag is not None}


# flag name (argparse dest) -> dotted config field: what manifests may use besides dotted names
FLAG_OVERRIDES: dict[str, str] = {dest: o.dotted for dest, o in flag_fields(Config).items()}


def add_flags(parser: argparse.ArgumentParser, cls: type = Config) -> None:
    """Add one argparse flag per declared option that has one, with choices and limits in its help.

    Every flag defaults to None (not given), so only what the user typed overrides the preset.
    """
    for option in options(cls):
        flag = option.flag
        if flag is None:
            continue
        limits = option.describe() if not option.choices else ""
        help_text = f"{flag.help} ({limits})" if limits and flag.help else flag.help or limits
        kwargs: dict[str, Any] = {"default": None, "help": help_text or None, "dest": flag.dest}
        if option.base is bool:
            kwargs.update(action="store_const", const=not flag.invert)
        elif flag.repeat:
            kwargs.update(action="append", type=flag.parse or str, metavar=flag.metavar)
        else:
            kwargs["type"] = flag.parse or str
            if option.choices:
                kwargs["choices"] = [str(c) for c in option.choices]
                if len(option.choices) > 6:  # a long set: listed in the help, not in the usage line
                    kwargs["metavar"] = flag.dest.upper()
                    kwargs["help"] = f"{help_text} (one of {', '.join(kwargs['choices'])})"
            if flag.metavar:
                kwargs["metavar"] = flag.metavar
        parser.add_argument(flag.name, **kwargs)


def flag_overrides(values: Mapping[str, Any], cls: type = Config) -> dict[str, Any]:
    """Dotted overrides from parsed flags (``vars(args)``); flags not given (None) are left out."""
    fields = flag_fields(cls)
    return {fields[dest].dotted: value for dest, value in values.items() if dest in fields and value is not None}


def add_set_flag(parser: argparse.ArgumentParser) -> None:
    """``--set NAME=VALUE``: any declared option by its dotted name, for those without a flag of their own."""
    parser.add_argument("--set", action="append", dest="set", metavar="NAME=VALUE", default=None,
                        help="any setting by its dotted name, e.g. --set faces.min_face=16 (repeatable)")  # fmt: skip


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """``["faces.min_face=16", ...]`` -> ``{"faces.min_face": "16"}``."""
    result: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set takes NAME=VALUE (e.g. faces.min_face=16), got '{item}'")
        result[name.strip()] = value.strip()
    return result


def config_from_flags(preset: str | None, values: Mapping[str, Any]) -> Config:
    """The run's Config: the preset, then ``--set`` assignments, then the flags the user gave (``vars(args)``)."""
    return load_config(preset, {**parse_assignments(values.get("set")), **flag_overrides(values)})


def job_settings_from_flags(values: Mapping[str, Any]) -> JobSettings:
    """A batch job's ``JobSettings`` from its parsed flags, through the same checks as ``Config``."""
    settings = JobSettings()
    for dotted, value in flag_overrides(values, JobSettings).items():
        _set_dotted(settings, dotted, value, source="command line")
    return settings


def alias_override(name: str, value: Any, source: str = "manifest") -> tuple[str, Any]:
    """A manifest column named by flag (``crf``, ``no_smooth``) or dotted name -> (dotted name, value)."""
    option = flag_fields(Config).get(name.replace("-", "_"))
    if option is None:
        return name, value
    if option.flag is not None and option.flag.invert:
        return option.dotted, not _coerce(value, bool, f"'{name}'", source)
    return option.dotted, value


def file_named_fields() -> frozenset[str]:
    """The dotted names of the options that name files (``FileNamed``)."""
    return frozenset(o.dotted for o in options(Config) if o.file_named)


def per_job_fields() -> frozenset[str]:
    """Dotted names a batch manifest row may not set (``PerJob``)."""
    return frozenset(o.dotted for o in options(Config) if o.per_job)


# ---------------------------------------------------------------------------------------------------
# Loading: the one gate


def preset_names() -> list[str]:
    return sorted(p.stem for p in _presets_dir().glob("*.yaml"))


def _presets_dir() -> Path:
    return PRESETS_DIR if PRESETS_DIR.is_dir() else PACKAGED_PRESETS_DIR


def load_config(
    preset: str | None = "default", overrides: dict[str, Any] | None = None, *, source: str = "command line"
) -> Config:
    """Build a Config from a preset name or YAML path, then apply dotted-name overrides.

    Every value is converted to its field's type and checked against its declared limits here; a
    bad one is a ``ConfigError`` that names where it came from (``source`` for the overrides).
    """
    config = Config()
    if preset:
        _apply_mapping(config, _read_preset(preset), source=preset)
    for dotted, value in (overrides or {}).items():
        _set_dotted(config, dotted, value, source=source)
    return config


def _read_preset(preset: str) -> dict[str, Any]:
    path = Path(preset)
    if path.suffix not in (".yaml", ".yml"):
        path = _presets_dir() / f"{preset}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset '{preset}'; choose one of: {', '.join(preset_names())} or a .yaml file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    data.pop("description", None)
    return data


def _apply_mapping(target: Any, data: dict[str, Any], source: str, prefix: str = "") -> None:
    declared = _section_options(type(target))
    for key, value in data.items():
        name = f"{prefix}{key}"
        key_attr = str(key).replace("-", "_")
        if key_attr not in declared:
            raise ConfigError(f"{source}: unknown setting '{name}'; known here: {', '.join(sorted(declared))}")
        current = getattr(target, key_attr)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{name}' is a section; give it a mapping")
            _apply_mapping(current, value, source, prefix=f"{name}.")
        else:
            setattr(target, key_attr, _checked(value, declared[key_attr], name, source))


def _set_dotted(target: Any, dotted: str, value: Any, source: str) -> None:
    *parents, leaf = dotted.split(".")
    mapping: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        mapping = {parent: mapping}
    _apply_mapping(target, mapping, source)


def _checked(value: Any, option: Option, name: str, source: str) -> Any:
    """``value`` converted to the option's type and checked against its limits."""
    label = f"'{name}' ({option.flag.name})" if option.flag else f"'{name}'"
    if option.optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
        return None
    converted = _coerce(value, option.base, label, source)
    for constraint in option.constraints:
        problem = constraint.problem(converted)
        if problem:
            raise ConfigError(f"{source}: {label} {problem}, got {value!r}")
    return converted


_NONE_WORDS = ("none", "null", "")


def _coerce(value: Any, annotation: Any, label: str, source: str) -> Any:
    """Convert a value to bool, int, float, str, a Literal's member or a tuple of one of them; ConfigError if it
    is not one."""
    if typing.get_origin(annotation) is Literal:
        return _literal_member(value, annotation, label, source)
    if typing.get_origin(annotation) is tuple:  # tuple[str, ...]: a list, or one string of items split by ';'
        items = value.split(";") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{source}: {label} must be a list, got {value!r}")
        (item_type, _) = typing.get_args(annotation)
        return tuple(_coerce(item.strip() if isinstance(item, str) else item, item_type, label, source)
                     for item in items if not (isinstance(item, str) and not item.strip()))  # fmt: skip
    convert = _CONVERTERS.get(annotation)
    if convert is None:
        raise TypeError(f"config fields take bool, int, float, str or a Literal, not {annotation}")
    try:
        return convert(value)
    except (TypeError, ValueError):
        pass
    type_name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"{source}: {label} must be {type_name}, got {value!r}")


def _literal_member(value: Any, annotation: Any, label: str, source: str) -> Any:
    """The Literal's member ``value`` is, or names as a string (spaces around it ignored); True is not 1."""
    allowed = typing.get_args(annotation)
    for choice in allowed:
        same = value == choice and type(value) is not bool
        if same or (isinstance(value, str) and value.strip() == str(choice)):
            return choice
    raise ConfigError(f"{source}: {label} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError  # True is not 1, and 2.5 is not 2
    return int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError
    return number


def _to_str(value: Any) -> str:
    if isinstance(value, (dict, list, bool)):
        raise ValueError
    return str(value)


# each raises ValueError or TypeError for a value that is not one of its type
_CONVERTERS: dict[type, Callable[[Any], Any]] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}
