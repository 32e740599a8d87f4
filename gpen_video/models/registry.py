"""Known GPEN models: file names, sizes, hashes, download locations, and where to look for the files.

Model files are looked up, in order, in ``--weights-dir``, ``$GPEN_VIDEO_WEIGHTS``, ``./weights`` and the
user cache (``$XDG_CACHE_HOME/gpen-video/weights``, default ``~/.cache/gpen-video/weights``). No hash has
been published for any GPEN release, so ``sha256`` is empty (``list`` says "unverified") until someone
records one from a known-good download.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gpen_video.errors import WeightsNotFoundError

DEFAULT_MODEL = "gpen-bfr-2048"
ENV_WEIGHTS = "GPEN_VIDEO_WEIGHTS"

_OSS = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models"
_MODELSCOPE = "https://modelscope.cn/models/damo/cv_gpen_image-portrait-enhancement-hires/resolve/master"
_FACEFUSION = "https://github.com/facefusion/facefusion-assets/releases/download/models-3.0.0"
_FACEFUSION_HF = "https://huggingface.co/facefusion/models-3.0.0/resolve/main"


@dataclass(frozen=True)
class ModelEntry:
    """One downloadable GPEN model."""

    name: str
    filename: str
    size: int  # crop side in pixels
    channel_multiplier: float
    narrow: float
    urls: tuple[str, ...]
    sha256: str = ""  # empty: no published hash; the download is not verified
    file_bytes: int | None = None  # exact size when known
    approx_mb: int = 0  # for display when the exact size is unknown
    alt_filenames: tuple[str, ...] = ()
    fmt: str = "torch"  # torch | onnx
    notes: str = ""
    licence: str = "non-commercial (yangxy/GPEN)"

    @property
    def filenames(self) -> tuple[str, ...]:
        return (self.filename, *self.alt_filenames)

    @property
    def verified(self) -> bool:
        return bool(self.sha256)


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


REGISTRY = Registry()
for _entry in (
    ModelEntry(
        name="gpen-bfr-2048",
        filename="GPEN-BFR-2048.pth",
        alt_filenames=("pytorch_model-2048.pt",),
        size=2048,
        channel_multiplier=2,
        narrow=1,
        urls=(f"{_MODELSCOPE}/pytorch_model-2048.pt", f"{_OSS}/GPEN-BFR-2048.pth"),
        approx_mb=285,
        notes="official link taken down in 2022; published again on ModelScope (damo/...-hires, 2023-02-15)",
    ),
    ModelEntry(
        name="gpen-bfr-1024",
        filename="pytorch_model.pt",
        alt_filenames=("GPEN-BFR-1024.pth",),
        size=1024,
        channel_multiplier=2,
        narrow=1,
        urls=(f"{_MODELSCOPE}/pytorch_model.pt",),
        approx_mb=285,
        notes="ModelScope only (damo/cv_gpen_image-portrait-enhancement-hires)",
    ),
    ModelEntry(
        name="gpen-bfr-512",
        filename="GPEN-BFR-512.pth",
        size=512,
        channel_multiplier=2,
        narrow=1,
        urls=(f"{_OSS}/GPEN-BFR-512.pth",),
        approx_mb=284,
    ),
    ModelEntry(
        name="gpen-bfr-256",
        filename="GPEN-BFR-256.pth",
        size=256,
        channel_multiplier=1,
        narrow=0.5,
        urls=(f"{_OSS}/GPEN-BFR-256.pth",),
        approx_mb=76,
    ),
    *(
        ModelEntry(
            name=f"gpen-bfr-{s}-onnx",
            filename=f"gpen_bfr_{s}.onnx",
            size=s,
            channel_multiplier=cm,
            narrow=n,
            urls=(f"{_FACEFUSION}/gpen_bfr_{s}.onnx", f"{_FACEFUSION_HF}/gpen_bfr_{s}.onnx"),
            approx_mb=mb,
            fmt="onnx",
            notes="FaceFusion's export (aligned with the ffhq_512 template in FaceFusion, batch may be fixed at 1)",
        )
        for s, cm, n, mb in ((2048, 2, 1, 285), (1024, 2, 1, 285), (512, 2, 1, 284), (256, 1, 0.5, 76))
    ),
):
    REGISTRY.add(_entry)


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
