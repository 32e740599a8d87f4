"""Shared fixtures: generated clips (no media is committed) and a CLI runner."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from gpen_video.synthetic import AudioTrack, ClipSpec, FaceScene, write_clip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests run where CUDA is present and are skipped (and said so) everywhere else."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; a CPU twin of this test runs instead")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Clips every I/O test can use; built once per test session, small so CI stays fast.
CLIPS: dict[str, ClipSpec] = {
    "vfr_h264_aac": ClipSpec(scene=FaceScene(frames=30), vfr=True),
    "prores_hq_10bit_pcm": ClipSpec(
        scene=FaceScene(frames=24),
        codec="prores_ks",
        pix_fmt="yuv422p10le",
        rate=Fraction(24000, 1001),
        codec_options={"profile": "hq", "vendor": "apl0"},
        audio=(AudioTrack(codec="pcm_s24le"),),
    ),
    "rotated_phone": ClipSpec(
        scene=FaceScene(width=360, height=640, frames=24, zoom=(0.9, 1.0)),
        rate=Fraction(30),
        rotation=90,
        color_range="JPEG",
        colorspace="ITU601",
        audio=(AudioTrack(rate=44100, layout="mono"),),
    ),
    "ffv1_444_odd_two_audio": ClipSpec(
        scene=FaceScene(width=333, height=241, frames=20),
        codec="ffv1",
        pix_fmt="yuv444p",
        audio=(AudioTrack(language="eng"), AudioTrack(codec="flac", frequency=880, layout="mono", language="fra")),
    ),
    "noface_h264": ClipSpec(scene=FaceScene(frames=24, faces=False), audio=(AudioTrack(),)),
    "noface_prores": ClipSpec(
        scene=FaceScene(frames=12, faces=False),
        codec="prores_ks",
        pix_fmt="yuv422p10le",
        rate=Fraction(24000, 1001),
        codec_options={"profile": "hq"},
        audio=(AudioTrack(codec="pcm_s16le"),),
    ),
    "noface_ffv1": ClipSpec(scene=FaceScene(frames=12, faces=False), codec="ffv1", pix_fmt="yuv420p"),
}
CLIP_EXT = {"prores_hq_10bit_pcm": ".mov", "noface_prores": ".mov", "ffv1_444_odd_two_audio": ".mkv",
            "noface_ffv1": ".mkv"}  # fmt: skip


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def make_clip(clip_dir: Path):
    """``make_clip(name)`` -> path of that generated clip (built once per session, never modified)."""
    cache: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in cache:
            path = clip_dir / f"{name}{CLIP_EXT.get(name, '.mp4')}"
            write_clip(path, CLIPS[name])
            path.chmod(0o444)  # the input must never be written
            cache[name] = path
        return cache[name]

    return build


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def run_cli():
    """Run ``gpen-video ARGS`` in a subprocess, as a user would."""

    def run(*args: str | Path, timeout: float = 300) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "gpen_video", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def restore_gpen_logger():
    """``cli.main`` called in-process points the package's logger at stderr and stops its propagation: undo
    that afterwards, so later tests' ``caplog`` still sees the package's records."""
    logger = logging.getLogger("gpen_video")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved
