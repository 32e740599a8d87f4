"""Clips and helpers for the batch-job tests: small, with a key frame every second so they segment."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from media_checks import frame_times, side_packets, video_planes

from gpen_video.synthetic import AudioTrack, ClipSpec, FaceScene, write_clip

KEYFRAME_EVERY_SECOND = {"g": "24", "keyint_min": "24", "sc_threshold": "0"}

# 5 s, 24 fps, no faces: five 1-second segments with --segment-seconds 1
LONG = ClipSpec(
    scene=FaceScene(width=320, height=180, frames=120, faces=False),
    codec_options=KEYFRAME_EVERY_SECOND,
    audio=(AudioTrack(),),
)
# VFR phone-like clip (time base 1/24000, irregular durations), two audio tracks
VFR = ClipSpec(
    scene=FaceScene(width=320, height=180, frames=72, faces=False),
    vfr=True,
    codec_options=KEYFRAME_EVERY_SECOND,
    audio=(AudioTrack(language="eng"), AudioTrack(frequency=880, layout="mono", language="fra")),
)
# real faces, so the faces stage tracks and restores across a segment boundary
FACES = ClipSpec(
    scene=FaceScene(width=320, height=180, frames=48, zoom=(2.2, 2.3), pan=(6.0, -3.0)),
    codec_options=KEYFRAME_EVERY_SECOND,
)


def write(folder: Path, name: str, spec: ClipSpec) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_clip(folder / name, spec)


def broken(path: Path) -> Path:
    """A file named like a video that is not one (an archive's damaged transfer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return path


def longer(spec: ClipSpec, frames: int) -> ClipSpec:
    return replace(spec, scene=replace(spec.scene, frames=frames))


def summary(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def outcome(data: dict[str, Any], name: str) -> dict[str, Any]:
    """The summary row of the input whose file name is ``name``."""
    rows = [f for f in data["files"] if Path(f["input"]).name == name]
    assert len(rows) == 1, f"{name} not in the summary: {[f['input'] for f in data['files']]}"
    return rows[0]


def same_media(a: Path, b: Path) -> None:
    """Same frames (decoded samples), same timestamps, same side-stream packets."""
    assert frame_times(a) == frame_times(b)
    assert side_packets(a) == side_packets(b)
    planes_a, planes_b = video_planes(a), video_planes(b)
    assert len(planes_a) == len(planes_b)
    for pa, pb in zip(planes_a, planes_b, strict=True):
        for x, y in zip(pa, pb, strict=True):
            assert (x == y).all()


def seconds(times: list[Fraction]) -> list[float]:
    return [float(t) for t in times]


def killed_in_segment(index: int, frame: int) -> str:
    """A script running ``batch`` with its argv[1] (a JSON list of arguments) that kills its own process (SIGKILL:
    no handler, no clean-up) when segment ``index`` has written ``frame`` frames: the same moment on every run."""
    return f"""
import json, os, signal, sys
from gpen_video.cli import main
from gpen_video.jobs import engine_local

real = engine_local.execute_segment

def execute_segment(task, restorers, progress=None):
    def killing(done):
        if task.index == {index} and done == {frame}:
            os.kill(os.getpid(), signal.SIGKILL)
        if progress is not None:
            progress(done)
    return real(task, restorers, killing)

engine_local.execute_segment = execute_segment
sys.exit(main(["batch", *json.loads(sys.argv[1])]))
"""
