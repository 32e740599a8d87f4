"""One typed configuration object.

A run's settings come from a preset in ``configs/`` (or a YAML file the user names), then CLI flags
override single fields by dotted name (``output.crf``). Every field is typed and checked here, so
the stages never see a loose dict or a string where a number belongs. Each stage owns a section.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpen_video.errors import ConfigError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"
PACKAGED_PRESETS_DIR = Path(__file__).resolve().parent / "presets"


@dataclass
class ReaderConfig:
    """Decoding."""

    threads: int = 0  # 0: let FFmpeg choose
    strict: bool = False  # damaged packets become an error instead of a warning


@dataclass
class OutputConfig:
    """Encoding and muxing."""

    video_codec: str = "auto"  # auto | libx264 | libx265 | prores_ks | ffv1 | ... (any PyAV encoder)
    crf: int | None = None  # None: the codec's default from `auto` (16 for x264, 18 for x265)
    preset: str | None = None  # x264/x265 preset; None: "slow"
    pix_fmt: str = "auto"  # auto keeps the source's chroma layout and bit depth
    encoder_backend: str = "pyav"  # pyav | ffmpeg (pipe to the user's ffmpeg binary)
    ffmpeg_binary: str | None = None  # for encoder_backend=ffmpeg; None: PATH, then imageio-ffmpeg's
    overwrite: bool = False


@dataclass
class FacesConfig:
    """Detection, tracking and landmark smoothing."""

    detector: str = "auto"  # auto | mtcnn | scrfd | retinaface | PATH.onnx
    score_threshold: float = 0.8
    min_face: int = 16  # faces narrower than this (detector box side, source px) are skipped; found at any frame size
    max_faces: int = 0  # 0: no limit; else the largest N per frame
    keyframe_interval: int = 8  # full detection at least every N frames
    scene_threshold: float = 27.0  # PySceneDetect ContentDetector threshold
    smooth: bool = True
    smooth_window: int = 9  # frames each side (zero-phase, look-ahead)
    smooth_strength: float = 1.0
    smooth_target: str = "points"  # points: the five landmarks | similarity: their alignment (rotation, scale, shift)
    min_track_length: int = 3  # observations before a face is restored (fewer only when its shot is shorter)
    confirm_score: float = 0.95  # a new face's best full-detection score must reach this to become a track
    max_gap: int = 4  # frames a track may be lost and still be interpolated
    detect_size: int = 960  # long side (px) of the copy the full detector runs on; 0: full resolution
    min_frontal: float = 0.3  # faces more in profile than this (0 profile .. 1 frontal) are skipped
    min_scene_len: int = 8  # frames; cuts closer than this to the previous one are ignored
    detector_threads: int = 0  # ONNX Runtime threads for the detector; 0: a quarter of the cores


@dataclass
class AlignConfig:
    """Warping faces to the model's template and back."""

    template: str = "gpen"  # gpen | ffhq


@dataclass
class ComposeConfig:
    """Pasting restored faces back into the frame."""

    blend: float = 0.8  # GPEN's alpha: weight of the restored face
    color_match: bool = True
    mask_erode: float = 0.04  # fraction of the crop size
    mask_blur: float = 0.08  # fraction of the crop size
    parsing_model: str | None = None
    upscale: int = 1


@dataclass
class RestoreConfig:
    """The restoring model and where it runs."""

    model: str = "gpen-bfr-2048"  # registry name, path, or identity
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | fp16 | bf16
    batch_size: int = 0  # 0: chosen from the device's memory
    weights_dir: str | None = None
    identity_size: int = 512  # crop side of the identity restorer
    compile: bool = False  # torch.compile the network (slow start, faster long runs on GPU)
    device_path: str = "auto"  # auto: frames stay on the GPU for align/restore/compose on CUDA | on | off


@dataclass
class Config:
    """Everything one run needs to know."""

    reader: ReaderConfig = field(default_factory=ReaderConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    restore: RestoreConfig = field(default_factory=RestoreConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    start: float | None = None  # seconds into the input
    duration: float | None = None  # seconds

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def preset_names() -> list[str]:
    return sorted(p.stem for p in _presets_dir().glob("*.yaml"))


def _presets_dir() -> Path:
    return PRESETS_DIR if PRESETS_DIR.is_dir() else PACKAGED_PRESETS_DIR


def load_config(preset: str | None = "default", overrides: dict[str, Any] | None = None) -> Config:
    """Build a Config from a preset name or YAML path, then apply dotted-name overrides."""
    config = Config()
    if preset:
        _apply_mapping(config, _read_preset(preset), source=preset)
    for dotted, value in (overrides or {}).items():
        _set_dotted(config, dotted, value, source="command line")
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
    for key, value in data.items():
        name = f"{prefix}{key}"
        fields = {f.name: f for f in dataclasses.fields(target)}
        key_attr = str(key).replace("-", "_")
        if key_attr not in fields:
            raise ConfigError(f"{source}: unknown setting '{name}'; known here: {', '.join(sorted(fields))}")
        current = getattr(target, key_attr)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{name}' is a section; give it a mapping")
            _apply_mapping(current, value, source, prefix=f"{name}.")
        else:
            setattr(target, key_attr, _coerce(value, _field_type(target, key_attr), name, source))


def _set_dotted(config: Config, dotted: str, value: Any, source: str) -> None:
    *parents, leaf = dotted.split(".")
    mapping: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        mapping = {parent: mapping}
    _apply_mapping(config, mapping, source)


def _field_type(target: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(target))
    return hints[name]


def _coerce(value: Any, annotation: Any, name: str, source: str) -> Any:
    """Check/convert a value to a field's annotated type (bool, int, float, str, or X | None)."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))
        if is_none and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], name, source)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if annotation is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if annotation is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    type_name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"{source}: '{name}' must be {type_name}, got {value!r}")
