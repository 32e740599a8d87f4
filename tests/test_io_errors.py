"""Bad input gets one line on stderr, exit 2, nothing written, the input untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from media_checks import frame_times

from gpen_video.synthetic import AudioTrack, ClipSpec, FaceScene, write_clip


def _assert_clean_failure(result, out_dir: Path, output: Path, inputs: dict[Path, bytes]) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
    assert not [p for p in out_dir.iterdir() if ".partial-" in p.name], "a temporary file was left behind"
    for path, content in inputs.items():
        assert path.read_bytes() == content


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000, layout="stereo")
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _truncated_copy(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _damaged_copy(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(3)
    for start in (int(len(data) * 0.35), int(len(data) * 0.6)):
        data[start : start + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def mkv_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mkv") / "noface.mkv"
    return write_clip(path, ClipSpec(scene=FaceScene(frames=48, faces=False), audio=(AudioTrack(),)))


def _bad_inputs(tmp: Path, make_clip) -> dict[str, Path]:
    garbage = tmp / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 60_000, dtype=np.uint8).tobytes())
    empty = tmp / "empty.mov"
    empty.write_bytes(b"")
    return {
        "missing": tmp / "does-not-exist.mp4",
        "folder": tmp,
        "garbage": garbage,
        "empty": empty,
        "audio_only": _audio_only(tmp / "audio.m4a"),
        "truncated_mp4": _truncated_copy(make_clip("noface_h264"), tmp / "truncated.mp4", 0.6),
        "text": (tmp / "notes.txt").resolve() if (tmp / "notes.txt").write_text("not a video\n" * 50) else None,
    }


@pytest.mark.parametrize("kind", ["missing", "folder", "garbage", "empty", "audio_only", "truncated_mp4", "text"])
def test_invalid_input(kind, tmp_path, make_clip, run_cli):
    inputs = _bad_inputs(tmp_path, make_clip)
    src = inputs[kind]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "result.mp4"
    before = {p: p.read_bytes() for p in inputs.values() if p.is_file()}
    result = run_cli("restore", src, "-o", output, "--model", "identity")
    _assert_clean_failure(result, out_dir, output, before)
    assert str(src.name) in result.stderr or str(src) in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--crf", "abc"],
        ["--crf", "99"],
        ["--start", "1:99"],
        ["--duration", "0"],
        ["--blend", "3"],
        ["--config", "no-such-preset"],
        ["--video-codec", "no-such-codec"],
        ["--pix-fmt", "yuv999p"],
        ["--precision", "int3"],
        ["--start", "500"],
        ["--device", "gpu0"],
    ],
)
def test_bad_option_values(args, tmp_path, make_clip, run_cli):
    src = make_clip("noface_h264")
    output = tmp_path / "o.mp4"
    result = run_cli("restore", src, "-o", output, "--model", "identity", *args)
    _assert_clean_failure(result, tmp_path, output, {src: src.read_bytes()})


def test_probe_of_garbage_is_one_line(tmp_path, run_cli):
    garbage = tmp_path / "g.mkv"
    garbage.write_bytes(b"\x00\x01garbage" * 1000)
    result = run_cli("probe", garbage)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_existing_output_needs_overwrite(tmp_path, make_clip, run_cli):
    src = make_clip("noface_h264")
    output = tmp_path / "exists.mp4"
    output.write_bytes(b"precious")
    result = run_cli("restore", src, "-o", output, "--model", "identity")
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert output.read_bytes() == b"precious"
    result = run_cli("restore", src, "-o", output, "--model", "identity", "--overwrite", "-q")
    assert result.returncode == 0, result.stderr
    assert frame_times(output) == frame_times(src)


def test_output_equal_to_input_is_refused_even_with_overwrite(tmp_path, make_clip, run_cli):
    src = tmp_path / "clip.mp4"
    src.write_bytes(make_clip("noface_h264").read_bytes())
    before = src.read_bytes()
    result = run_cli("restore", src, "-o", src, "--model", "identity", "--overwrite")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert src.read_bytes() == before


@pytest.mark.slow
def test_damaged_file_is_restored_with_a_warning(mkv_clip, tmp_path, run_cli):
    src = _damaged_copy(mkv_clip, tmp_path / "damaged.mkv")
    output = tmp_path / "damaged.restored.mkv"
    result = run_cli("restore", src, "-o", output, "--model", "identity")
    assert result.returncode == 0, result.stderr
    assert "damaged" in result.stderr
    n = len(frame_times(output))
    assert 0 < n <= 48
    strict_out = tmp_path / "strict.mkv"
    strict = run_cli("restore", src, "-o", strict_out, "--model", "identity", "--strict")
    _assert_clean_failure(strict, tmp_path, strict_out, {})


def test_truncated_mkv_keeps_what_decodes(mkv_clip, tmp_path, run_cli):
    src = _truncated_copy(mkv_clip, tmp_path / "cut.mkv", 0.5)
    output = tmp_path / "cut.restored.mkv"
    result = run_cli("restore", src, "-o", output, "--model", "identity", "-q")
    assert result.returncode == 0, result.stderr
    decodable = len(frame_times(src))
    assert 10 < decodable < 48
    assert frame_times(output) == frame_times(src)


@pytest.mark.slow
def test_interrupt_leaves_no_partial_file(tmp_path):
    src = write_clip(
        tmp_path / "long.mkv",
        ClipSpec(scene=FaceScene(width=640, height=360, frames=300, faces=False), codec="ffv1", audio=()),
    )
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "long.restored.mkv"
    # Ctrl-C as a terminal's foreground job gets it: a suite started in the background of a non-interactive shell
    # ignores SIGINT, and a child keeps an ignored SIGINT ignored (as POSIX tools do, gpen-video included)
    as_foreground = "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    as_foreground += "runpy.run_module('gpen_video', run_name='__main__', alter_sys=True)"
    proc = subprocess.Popen(
        [sys.executable, "-c", as_foreground, "restore", str(src), "-o", str(output), "--model", "identity",
         "--video-codec", "libx264", "--preset", "veryslow"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and not any(".partial-" in p.name for p in out_dir.iterdir()):
        time.sleep(0.05)
    assert any(".partial-" in p.name for p in out_dir.iterdir()), "the run never started writing"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert list(out_dir.iterdir()) == []
