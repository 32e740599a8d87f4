"""Known models, GPEN restorers and RRDBNet upscalers: files, sizes, hashes, download locations, where to look.

Model files are looked up, in order, in ``--weights-dir``, ``$GPEN_VIDEO_WEIGHTS``, ``./weights`` and the
user cache (``$XDG_CACHE_HOME/gpen-video/weights``, default ``~/.cache/gpen-video/weights``). Each entry
names the file ``fetch`` saves (``filename``) and the other names a user may have it under
(``alt_filenames``: the name a mirror serves it as, the official GPEN name); both are accepted.

Where a file comes from, in the order most likely to work:

- GPEN-BFR-1024 and -2048 are on ModelScope (``iic/cv_gpen_image-portrait-enhancement-hires``, formerly
  ``damo/...``), served at ``/api/v1/models/<id>/repo?Revision=master&FilePath=<file>`` (the form its own
  SDK uses; it honours ``Range``) and at ``/models/<id>/resolve/master/<file>``. No hash is published for
  them, so ``fetch`` asks ModelScope's file list (``/api/v1/models/<id>/repo/files``, each file's
  ``Sha256``) at fetch time, and checks the checkpoint's tensors against the expected network before the
  file is accepted.
- GPEN-BFR-512 and -256 are on the authors' OSS bucket.
- FaceFusion's ONNX exports are on its GitHub release and Hugging Face mirror; FaceFusion publishes a
  ``<name>.hash`` beside each file (CRC32 of the whole file), and the 2048 export's size and SHA-256 are
  known.
- The background upscalers (``kind="rrdbnet"``): Real-ESRGAN's ``RealESRGAN_x2plus.pth`` /
  ``RealESRGAN_x4plus.pth`` from its GitHub releases (BSD-3-Clause), and GPEN's RealESRNet
  ``realesrnet_x2.pth`` / ``realesrnet_x4.pth`` from the same OSS folder as GPEN-BFR-512. No hash is
  published for any of them, so ``fetch`` accepts one only once it loads as an RRDBNet of the entry's scale
  (``weights_only``, every official key, nothing else).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gpen_video.errors import WeightsNotFoundError

DEFAULT_MODEL = "gpen-bfr-2048"
ENV_WEIGHTS = "GPEN_VIDEO_WEIGHTS"

MODELSCOPE = "https://www.modelscope.cn"
GPEN_HIRES_IDS = ("iic/cv_gpen_image-portrait-enhancement-hires", "damo/cv_gpen_image-portrait-enhancement-hires")
_OSS = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models"
_FACEFUSION = "https://github.com/facefusion/facefusion-assets/releases/download/models-3.0.0"
_FACEFUSION_HF = "https://huggingface.co/facefusion/models-3.0.0/resolve/main"

#: the 5-point alignment a model was trained or exported with (``faces/geometry.py`` names)
Template = Literal["gpen", "ffhq", "arcface_128"]
#: the network a file holds: a GPEN face restorer, or an RRDBNet background upscaler (``models/rrdbnet.py``)
Kind = Literal["gpen", "rrdbnet"]
_REALESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"


def modelscope_urls(path: str, model_ids: Iterable[str] = GPEN_HIRES_IDS, site: str = MODELSCOPE) -> tuple[str, ...]:
    """Download URLs of a ModelScope file: each model id (current namespace first), the SDK's form first."""
    urls = []
    for model_id in model_ids:
        urls.append(f"{site}/api/v1/models/{model_id}/repo?Revision=master&FilePath={path}")
        urls.append(f"{site}/models/{model_id}/resolve/master/{path}")
    return tuple(urls)


def modelscope_file_lists(
    path: str, model_ids: Iterable[str] = GPEN_HIRES_IDS, site: str = MODELSCOPE
) -> tuple[tuple[str, str], ...]:
    """(file-list URL, path of the file in it) for each model id: where the file's SHA-256 is listed."""
    return tuple(
        (f"{site}/api/v1/models/{model_id}/repo/files?Revision=master&Recursive=True", path) for model_id in model_ids
    )


@dataclass(frozen=True)
class Architecture:
    """The network a checkpoint must hold: ``FullGenerator(size, style_dim, n_mlp, cm, narrow)``.

    ``tensors``/``params`` are the known counts of the released file (checked too when given).
    """

    size: int
    channel_multiplier: float = 2
    narrow: float = 1.0
    n_mlp: int = 8
    style_dim: int = 512
    tensors: int | None = None  # state_dict entries, blur-kernel buffers included
    params: int | None = None  # learnable parameters


@dataclass(frozen=True)
class ModelEntry:
    """One downloadable model: a GPEN restorer (``kind="gpen"``) or an RRDBNet upscaler (``kind="rrdbnet"``).

    For an upscaler only ``scale`` describes the network (``size``, ``channel_multiplier``, ``narrow`` and
    ``template`` are GPEN's and unused); build one with ``upscaler_entry``.
    """

    name: str
    filename: str  # the name ``fetch`` saves it under
    size: int  # crop side in pixels
    channel_multiplier: float
    narrow: float
    urls: tuple[str, ...]  # download locations, in the order they are tried
    sha256: str = ""  # published SHA-256; empty: none published
    file_bytes: int | None = None  # exact size when known
    approx_mb: int = 0  # for display when the exact size is unknown
    alt_filenames: tuple[str, ...] = ()  # other names the file is accepted under
    fmt: Literal["torch", "onnx"] = "torch"
    template: Template = "gpen"  # the alignment the model expects its crops in
    sha256_lists: tuple[tuple[str, str], ...] = ()  # (file-list URL, path): a SHA-256 looked up at fetch time
    crc32_urls: tuple[str, ...] = ()  # FaceFusion-style ``.hash`` files (CRC32, 8 hex digits)
    n_mlp: int = 8
    style_dim: int = 512
    tensors: int | None = None  # known state_dict entries of the released file
    params: int | None = None  # known parameter count of the released file
    notes: str = ""
    licence: str = "non-commercial (yangxy/GPEN)"
    kind: Kind = "gpen"
    scale: int = 0  # an upscaler's factor (2 or 4); 0 for a GPEN restorer

    @property
    def is_upscaler(self) -> bool:
        return self.kind == "rrdbnet"

    @property
    def filenames(self) -> tuple[str, ...]:
        return (self.filename, *self.alt_filenames)

    @property
    def verified(self) -> bool:
        """A published hash is on record (a looked-up one is only known after ``fetch``)."""
        return bool(self.sha256)

    @property
    def architecture(self) -> Architecture:
        return Architecture(
            self.size, self.channel_multiplier, self.narrow, self.n_mlp, self.style_dim, self.tensors, self.params
        )


@dataclass
class Registry:
    entries: dict[str, ModelEntry] = field(default_factory=dict)

    def add(self, entry: ModelEntry) -> None:
        self.entries[entry.name] = entry

    def get(self, name: str) -> ModelEntry | None:
        return self.entries.get(name.lower())

    def by_filename(self, filename: str) -> ModelEntry | None:
        return next((e for e in self.entries.values() if filename in e.filenames), None)

    def __iter__(self):
        return iter(self.entries.values())


def _facefusion(size: int, cm: float, narrow: float, mb: int, template: Template, **known: object) -> ModelEntry:
    name = f"gpen_bfr_{size}"
    return ModelEntry(
        name=f"gpen-bfr-{size}-onnx",
        filename=f"{name}.onnx",
        size=size,
        channel_multiplier=cm,
        narrow=narrow,
        urls=(f"{_FACEFUSION}/{name}.onnx", f"{_FACEFUSION_HF}/{name}.onnx"),
        crc32_urls=(f"{_FACEFUSION}/{name}.hash", f"{_FACEFUSION_HF}/{name}.hash"),
        approx_mb=mb,
        fmt="onnx",
        template=template,
        notes="FaceFusion's export (its batch may be fixed at 1)",
        **known,  # type: ignore[arg-type]
    )


def upscaler_entry(name: str, filename: str, url: str, scale: int, licence: str, notes: str = "", mb: int = 67):
    """An RRDBNet background upscaler: no published hash, checked by loading it as an RRDBNet of ``scale``."""
    return ModelEntry(
        name=name,
        filename=filename,
        size=0,
        channel_multiplier=0,
        narrow=0,
        urls=(url,),
        approx_mb=mb,
        kind="rrdbnet",
        scale=scale,
        licence=licence,
        notes=notes,
    )


REGISTRY = Registry()
for _entry in (
    ModelEntry(
        name="gpen-bfr-2048",
        filename="GPEN-BFR-2048.pth",
        alt_filenames=("pytorch_model-2048.pt",),
        size=2048,
        channel_multiplier=2,
        narrow=1,
        urls=(*modelscope_urls("pytorch_model-2048.pt"), f"{_OSS}/GPEN-BFR-2048.pth"),
        sha256_lists=modelscope_file_lists("pytorch_model-2048.pt"),
        approx_mb=285,
        tensors=201,
        params=71_294_769,
        notes="official link taken down in 2022; on ModelScope (GPEN hires) since 2023-02-15 as pytorch_model-2048.pt",
    ),
    ModelEntry(
        name="gpen-bfr-1024",
        filename="GPEN-BFR-1024.pth",
        alt_filenames=("pytorch_model.pt",),
        size=1024,
        channel_multiplier=2,
        narrow=1,
        urls=modelscope_urls("pytorch_model.pt"),
        sha256_lists=modelscope_file_lists("pytorch_model.pt"),
        approx_mb=285,
        tensors=182,
        params=71_210_540,
        notes="ModelScope only (GPEN hires), as pytorch_model.pt",
    ),
    ModelEntry(
        name="gpen-bfr-512",
        filename="GPEN-BFR-512.pth",
        size=512,
        channel_multiplier=2,
        narrow=1,
        urls=(f"{_OSS}/GPEN-BFR-512.pth",),
        approx_mb=284,
        tensors=163,
        params=71_005_223,
    ),
    ModelEntry(
        name="gpen-bfr-256",
        filename="GPEN-BFR-256.pth",
        size=256,
        channel_multiplier=1,
        narrow=0.5,
        urls=(f"{_OSS}/GPEN-BFR-256.pth",),
        approx_mb=76,
        tensors=144,
        params=18_879_010,
    ),
    _facefusion(
        2048,
        2,
        1,
        286,
        "ffhq",
        sha256="66d12a637118d71b00f5a290b8dac13c81c1c0326a127a1978799c6e17bb8d1f",
        file_bytes=285_582_766,
    ),
    _facefusion(1024, 2, 1, 285, "ffhq"),
    _facefusion(512, 2, 1, 284, "ffhq"),
    _facefusion(256, 1, 0.5, 76, "arcface_128"),
    upscaler_entry(
        "realesrgan-x2",
        "RealESRGAN_x2plus.pth",
        f"{_REALESRGAN}/v0.2.1/RealESRGAN_x2plus.pth",
        2,
        "BSD-3-Clause (xinntao/Real-ESRGAN)",
        "Real-ESRGAN's release v0.2.1",
    ),
    upscaler_entry(
        "realesrgan-x4",
        "RealESRGAN_x4plus.pth",
        f"{_REALESRGAN}/v0.1.0/RealESRGAN_x4plus.pth",
        4,
        "BSD-3-Clause (xinntao/Real-ESRGAN)",
        "Real-ESRGAN's release v0.1.0",
    ),
    upscaler_entry(
        "realesrnet-x2",
        "realesrnet_x2.pth",
        f"{_OSS}/realesrnet_x2.pth",
        2,
        "non-commercial (yangxy/GPEN)",
        "GPEN's sr_model (RealESRNet)",
    ),
    upscaler_entry(
        "realesrnet-x4",
        "realesrnet_x4.pth",
        f"{_OSS}/realesrnet_x4.pth",
        4,
        "non-commercial (yangxy/GPEN)",
        "GPEN's sr_model (RealESRNet)",
    ),
):
    REGISTRY.add(_entry)


def template_for(model: str) -> Template | None:
    """The alignment template of a registry model (by name or file name), or None when it is not one."""
    entry = REGISTRY.get(model) or REGISTRY.by_filename(Path(model).name)
    return entry.template if entry and not entry.is_upscaler else None


def resolve_template(name: str, model: str) -> str:
    """``align.template`` made concrete: ``auto`` is the registry's template for ``model`` (else ``gpen``)."""
    if name != "auto":
        return name
    return template_for(model) or "gpen"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gpen-video/weights`` (default ``~/.cache/gpen-video/weights``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpen-video" / "weights"


def search_dirs(weights_dir: str | Path | None = None) -> list[Path]:
    """Where model files are looked for, first match wins."""
    dirs: list[Path] = []
    if weights_dir:
        dirs.append(Path(weights_dir).expanduser())
    if os.environ.get(ENV_WEIGHTS):
        dirs.append(Path(os.environ[ENV_WEIGHTS]).expanduser())
    dirs += [Path.cwd() / "weights", user_cache_dir()]
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def default_download_dir(weights_dir: str | Path | None = None) -> Path:
    """Where ``fetch`` puts a file: ``--weights-dir``, else ``$GPEN_VIDEO_WEIGHTS``, else the user cache."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    if os.environ.get(ENV_WEIGHTS):
        return Path(os.environ[ENV_WEIGHTS]).expanduser()
    return user_cache_dir()


def find_file(filenames: Iterable[str], weights_dir: str | Path | None = None) -> Path | None:
    for directory in search_dirs(weights_dir):
        for filename in filenames:
            candidate = directory / filename
            if candidate.is_file():
                return candidate
    return None


def get_entry(name: str) -> ModelEntry:
    entry = REGISTRY.get(name)
    if entry is None:
        known = ", ".join(e.name for e in REGISTRY)
        raise WeightsNotFoundError(f"unknown model '{name}'; known models: {known}, or give a path to a model file")
    return entry


def locate(name: str, weights_dir: str | Path | None = None) -> Path:
    """The file of a registry model, or a one-line error: which file, where it was looked for, how to fetch it."""
    entry = get_entry(name)
    path = find_file(entry.filenames, weights_dir)
    if path is None:
        names = " or ".join(entry.filenames)
        where = ", ".join(str(d) for d in search_dirs(weights_dir))
        raise WeightsNotFoundError(
            f"model file {names} for {entry.name} not found in {where}; run: gpen-video weights fetch {entry.name}"
        )
    return path
