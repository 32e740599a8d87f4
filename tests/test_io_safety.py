"""Issue 12 safety: no-replace rename, stale partials, SIGTERM/SIGHUP cleanup, errors found before the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conformance_cases import ffmpeg, tone, video_src

from gpen_video.errors import OutputError
from gpen_video.io.colour import to_8bit
from gpen_video.io.formats import container_caps, muxer_for_extension
from gpen_video.io.metadata import offset_timecode
from gpen_video.io.output import atomic_output, atomic_write_text, stale_partials


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("safety") / "clip.mov"
    ffmpeg(*video_src(seconds=0.4), *tone(), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-c:a", "aac", path)
    return path


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("safety_long") / "long.mkv"
    ffmpeg(*video_src("320x240", seconds=30), "-c:v", "libx264", "-preset", "ultrafast", path)
    return path


def test_rename_never_replaces_a_file_that_appeared(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(OutputError, match="appeared"), atomic_output(out) as temp:
        temp.write_bytes(b"ours")
        out.write_bytes(b"theirs")  # another run finished first
    assert out.read_bytes() == b"theirs"
    assert not list(tmp_path.glob(".out.partial-*"))


def test_overwrite_replaces_only_the_file_seen_at_the_start(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    with atomic_output(out) as temp:
        temp.write_bytes(b"new")
    assert out.read_bytes() == b"new"


def test_atomic_write_text_no_replace(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    atomic_write_text(target, "{}")
    assert target.read_text() == "{}"
    with pytest.raises(OutputError, match="already exists"):
        atomic_write_text(target, "[]", replace=False)
    assert target.read_text() == "{}"


def test_stale_partials_of_dead_runs_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.partial-{dead.pid}.mkv"
    stale.write_bytes(b"half")
    live = tmp_path / f".out.partial-{os.getppid()}.mkv"  # a running process's partial stays
    live.write_bytes(b"busy")
    assert stale_partials(out) == [stale]
    with atomic_output(out) as temp:
        temp.write_bytes(b"done")
    assert not stale.exists() and live.exists() and out.read_bytes() == b"done"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_leave_no_partial(sig: signal.Signals, long_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    proc = subprocess.Popen([sys.executable, "-m", "gpen_video", "restore", str(long_clip), "-o", str(out),
                             "--model", "identity", "-q"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".out.partial-*")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.partial-*")), "the run never started writing"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_dnxhd_without_profile_works_or_fails_in_one_line(small_clip: Path, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "dnx.mov"
    result = run_cli("restore", small_clip, "-o", out, "--model", "identity", "-q", "--video-codec", "dnxhd")
    if result.returncode:
        assert "dnxhd" in _one_line_error(result)
        assert not out.exists()
    else:
        assert out.exists()


def test_unwritable_report_path_fails_before_the_run(small_clip: Path, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "out.mov"
    result = run_cli("restore", small_clip, "-o", out, "--model", "identity", "--report", tmp_path / "no" / "r.json")
    assert "report" in _one_line_error(result)
    assert not out.exists()


def test_codec_the_container_cannot_hold_fails_in_one_line(small_clip: Path, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "out.webm"
    result = run_cli("restore", small_clip, "-o", out, "--model", "identity", "--video-codec", "libx264")
    assert "libx264" in _one_line_error(result)
    assert not out.exists()


def test_probe_plan_lists_every_stream_with_its_action(small_clip: Path, tmp_path: Path, run_cli) -> None:
    result = run_cli("probe", "--plan", small_clip, "-o", tmp_path / "x.webm")
    assert result.returncode == 0, result.stderr
    assert "plan: webm output, video libvpx-vp9" in result.stdout
    assert "audio #1 (aac): encode" in result.stdout
    assert "fields: " in result.stdout and "aspect: pixel" in result.stdout
    assert "fusion: off (fusion.frames 0)" in result.stdout  # the default preset's, said where it is off
    preset = tmp_path / "fused.yaml"
    preset.write_text("fusion:\n  frames: 3\n  strength: 0.5\nselection:\n  faces: largest\n", encoding="utf-8")
    fused = run_cli("probe", "--plan", small_clip, "--config", preset)
    assert "fusion: 3 frame(s) each side of each face along its track, strength 0.5" in fused.stdout, fused.stderr
    assert "faces restored: human faces only (where dlib is installed)" in result.stdout
    assert "faces restored: the largest face of each frame; human" in fused.stdout


def test_container_caps_come_from_ffmpeg() -> None:
    assert muxer_for_extension(".mkv") == "matroska" and muxer_for_extension(".ts") == "mpegts"
    webm = container_caps("webm")
    assert not webm.holds("libx264") and webm.holds("libvpx-vp9") and webm.default_audio == "opus"
    assert container_caps("matroska").holds("srt")  # PyAV's name for SubRip
    assert not container_caps("avi").reorders and container_caps("mov").reorders


def test_timecode_offset_and_8bit_rule() -> None:
    from fractions import Fraction

    import numpy as np

    assert offset_timecode("01:00:00:00", Fraction(25), Fraction(2)) == "01:00:02:00"
    assert offset_timecode("00:59:59;29", Fraction(30000, 1001), Fraction(1, 30)) == "01:00:00;00"
    assert to_8bit(np.array([0, 255, 65535, 32896], np.uint16)).tolist() == [0, 0, 255, 128]


def test_batch_assembled_mkv_keeps_its_frame_rate(tmp_path: Path) -> None:
    """Segments stream-copied into an MKV keep the source's rate (copy_stream), not Matroska's 1000 fps."""
    from conformance_cases import ffprobe_json

    src = tmp_path / "in"
    src.mkdir()
    ffmpeg(*video_src(seconds=2.0), *tone(seconds=2.0), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-c:a",
           "aac", src / "c.mkv")  # fmt: skip
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "gpen_video", "batch", str(src), "-o", str(out), "--model",
                           "identity", "--segment-seconds", "1", "-q"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    probe = ffprobe_json(out / "c.mkv", "-select_streams", "v", "-show_entries", "stream=avg_frame_rate")
    assert probe["streams"][0]["avg_frame_rate"] == "25/1"


def test_a_matroska_pixel_aspect_is_kept_without_a_word(tmp_path: Path, run_cli) -> None:
    """FFV1 in Matroska: PyAV sets no stream aspect there, so the writer remuxes once with ffmpeg to keep the
    16:11 pixels; ffprobe reads them back, and nothing is said about an aspect that was not lost."""
    source, out = tmp_path / "pal.mkv", tmp_path / "out.mkv"
    ffmpeg(*video_src("176x144", seconds=0.2), "-vf", "setsar=16/11", "-c:v", "ffv1", source)
    result = run_cli("restore", source, "-o", out, "--model", "identity", "-q")
    assert result.returncode == 0, result.stderr
    assert "aspect" not in result.stderr, result.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=sample_aspect_ratio", "-of", "csv=p=0",
                            str(out)], capture_output=True, text=True, check=True)  # fmt: skip
    assert probe.stdout.strip() == "16:11"
