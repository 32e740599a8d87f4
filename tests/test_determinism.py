"""Same input, same pictures: a segmented x264 batch of crowd content under load, run two ways and resumed.

The clip is a pan over insightface's t1.jpg (six faces entering and leaving), made by the ffmpeg CLI. Each run is
its own process, as a user's would be, while a CPU burner keeps the machine busy. The judge is ffmpeg's
framemd5 of the decoded pictures, so two outputs agree only if every frame is the same, sample for sample.

Before the encoder ran inside ``memory.zeroed_heap_blocks``, libx264's macroblock tree read heap memory it had not
written, and most runs of this batch differed from each other (from a few frames into a segment on).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance_cases import ffmpeg_exe
from jobs_helpers import killed_in_segment, outcome, summary

from gpen_video.jobs.inputs import record_key
from gpen_video.synthetic import faces_image_path

FFMPEG = ffmpeg_exe()
NAME = "crowd.mp4"


def _crowd_pan(folder: Path) -> Path:
    """3 s of 960x540 H.264 (a key frame each second) panning over the six faces, with AAC audio."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / NAME
    pan = "crop=960:540:'min(t*80,320)':'min(t*60,346)',format=yuv420p"
    subprocess.run([FFMPEG, "-v", "error", "-loop", "1", "-framerate", "25", "-i", str(faces_image_path()),
                    "-f", "lavfi", "-i", "sine=f=440:d=3", "-vf", pan, "-t", "3", "-c:v", "libx264", "-g", "25",
                    "-c:a", "aac", "-shortest", str(path)], check=True)  # fmt: skip
    return path


@pytest.fixture
def cpu_burner() -> Iterator[None]:
    """One process spinning on a core for the length of the test: the runs' threads are scheduled unevenly."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        burner.kill()
        burner.wait()


def _batch_args(clip: Path, out: Path, *extra: str) -> list[str]:
    return [str(clip), "-o", str(out), "--model", "identity", "--segment-seconds", "1", "-q", *extra]


def _run(script: str, args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", script, json.dumps(args)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=600)  # fmt: skip


def _framemd5(path: Path, *select: str) -> list[str]:
    """ffmpeg's framemd5 lines (pts, size, md5 per frame or packet) of what ``select`` picks: ``-map 0:v`` decodes
    the pictures, ``-map 0:a -c copy`` hashes the audio packets."""
    done = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), *select, "-f", "framemd5", "-"],
                          capture_output=True, check=True)  # fmt: skip
    return [line for line in done.stdout.decode().splitlines() if not line.startswith("#")]


_LOCAL = """
import json, sys
from gpen_video.cli import main
sys.exit(main(["batch", *json.loads(sys.argv[1])]))
"""

_RAY = """
import json, sys
import ray
from gpen_video.cli import main
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
try:
    code = main(["batch", *json.loads(sys.argv[1]), "--engine", "ray"])
finally:
    ray.shutdown()
sys.exit(code)
"""


@pytest.mark.slow
def test_a_segmented_x264_batch_gives_the_same_pictures_every_run_under_load(tmp_path: Path, cpu_burner) -> None:
    clip = _crowd_pan(tmp_path / "in")
    outputs = []
    for engine, script in (("local", _LOCAL), ("ray", _RAY)):  # each later run is compared with the first
        done = _run(script, _batch_args(clip, tmp_path / engine))
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(tmp_path / engine / NAME)

    resumed = tmp_path / "resumed"
    killed = _run(killed_in_segment(1, 12), _batch_args(clip, resumed))
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    record = resumed / ".gpen-video-job" / "files" / f"{record_key(Path(NAME))}.json"
    assert sorted(json.loads(record.read_text())["segments"]) == ["0"]
    done = _run(_LOCAL, _batch_args(clip, resumed, "--summary", str(tmp_path / "resume.json")))
    assert done.returncode == 0, done.stderr.decode()
    row = outcome(summary(tmp_path / "resume.json"), NAME)
    assert row["segments"] == 3 and row["segments_reused"] == [0] and row["segments_computed"] == [1, 2]
    assert row["faces_restored"] > 0  # the faces went through the compose path, not just the source's samples
    outputs.append(resumed / NAME)

    reference = _framemd5(outputs[0], "-map", "0:v")
    assert len(reference) == 75
    for output in outputs[1:]:
        pictures = _framemd5(output, "-map", "0:v")
        differing = [i for i, (a, b) in enumerate(zip(reference, pictures, strict=True)) if a != b]
        assert not differing, f"{output.parent.name}: frames {differing} differ from the first run's"
        assert _framemd5(output, "-map", "0:a", "-c", "copy") == _framemd5(outputs[0], "-map", "0:a", "-c", "copy")


def test_the_host_worker_threads_change_no_picture_and_no_track(tmp_path: Path) -> None:
    """One host worker thread, then three (the faces stage's per-face motion, key-frame looks and fusion, compose's
    frames): the same pictures, frame for frame, and the same ``--tracks`` rows."""
    clip = _crowd_pan(tmp_path / "in")
    results = []
    for threads in ("1", "3"):
        out, tracks = tmp_path / f"threads-{threads}.mp4", tmp_path / f"threads-{threads}.jsonl"
        args = [
            str(clip),
            "-o",
            str(out),
            "--model",
            "identity",
            "--threads",
            threads,
            "--tracks",
            str(tracks),
            "-q",
            "--fusion-frames",
            "1",
        ]
        done = subprocess.run([sys.executable, "-m", "gpen_video", "restore", *args], capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr.decode()
        results.append((_framemd5(out, "-map", "0:v"), tracks.read_text().splitlines()))
    (pictures, rows), (pictures_3, rows_3) = results
    assert len(pictures) == 75 and len(rows) >= 75 * 3, (len(pictures), len(rows))  # three to six faces in view
    differing = [i for i, (a, b) in enumerate(zip(pictures, pictures_3, strict=True)) if a != b]
    assert not differing, f"frames {differing} differ with three threads"
    assert rows == rows_3
