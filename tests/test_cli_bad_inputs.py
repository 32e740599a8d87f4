"""Bad input gets one line on stderr and exit 2, before any work (issue 25): bad model files in every command
that reads them, and ``--audio`` given with a video input.

The bad files are made here the way users meet them: random bytes, a text file renamed ``.pth``, a download
cut in half, an empty file, a pickle holding code, an ONNX file that is not one. The CLI runs in-process
(``cli.main``) so the suite pays for the imports once.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch

from gpen_video import cli


def _random(path):
    path.write_bytes(os.urandom(4096))


def _text(path):
    path.write_text("this is not a checkpoint\n")


def _cut_download(path):
    torch.save({"w": torch.zeros(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path):
    path.write_bytes(b"")


def _legacy_pickle_of_code(path):
    path.write_bytes(pickle.dumps({"w": os.system}, protocol=2))


BAD_FILES = {"random": _random, "text": _text, "cut": _cut_download, "empty": _empty, "code": _legacy_pickle_of_code}


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _commands(model, tmp_path, video):
    return {
        "restore": ["restore", str(video), "--model", str(model), "-o", str(tmp_path / "out.mp4"), "-q"],
        "verify": ["weights", "verify", str(model)],
        "export": ["weights", "export-onnx", str(model), str(tmp_path / "out.onnx")],
    }


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from conformance_cases import ffmpeg, video_src

    path = tmp_path_factory.mktemp("bad_model") / "in.mp4"
    ffmpeg(*video_src(), "-c:v", "libx264", path)
    return path


# export-onnx reads PyTorch files only
CASES = [(kind, command) for kind in BAD_FILES for command in ("restore", "verify", "export")]
CASES += [("onnx", "restore"), ("onnx", "verify")]


@pytest.mark.parametrize(("kind", "command"), CASES)
def test_a_bad_model_file_gets_one_line_and_exit_2(tmp_path, video, capfd, restore_gpen_logger, kind, command):
    if kind == "onnx":
        model = tmp_path / "model.onnx"
        _text(model)
    else:
        model = tmp_path / "model.pth"
        BAD_FILES[kind](model)
    before = model.read_bytes()
    code = _run(_commands(model, tmp_path, video)[command])
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and str(model.name) in lines[0], err
    assert model.read_bytes() == before  # the input is never modified
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("command", ["restore", "preview", "batch"])
def test_audio_with_a_video_input_is_refused_before_work(tmp_path, video, capfd, restore_gpen_logger, command):
    from conformance_cases import ffmpeg

    wav = tmp_path / "sound.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.4", wav)
    out = tmp_path / ("out" if command == "batch" else "out.mp4")
    argv = {
        "restore": ["restore", str(video), "-o", str(out)],
        "preview": ["preview", str(video), "-o", str(tmp_path / "p")],
        "batch": ["batch", str(video), "-o", str(out)],
    }[command]
    code = _run([*argv, "--model", "identity", "--audio", str(wav), "-q"])
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "--audio" in err, err
    assert not out.exists() and not list(tmp_path.glob("p*"))


def _loaded_after(argv: list[str], modules: tuple[str, ...]) -> tuple[str, str, subprocess.CompletedProcess]:
    """``gpen-video argv`` in a fresh interpreter: its exit code, which of ``modules`` it had imported (comma
    separated), and the process."""
    code = (
        "import sys\nfrom gpen_video import cli\n"
        f"try:\n    rc = cli.main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
        f"heavy = sorted(m for m in {modules!r} if m in sys.modules)\n"
        "print(rc, ','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    rc, _, heavy = done.stdout.strip().partition(" ")
    return rc, heavy, done


@pytest.mark.parametrize(
    "argv",
    [
        ["restore", "x.mp4", "--blend", "7"],
        ["preview", "x.mp4", "--set", "compose.nothing=1"],
        ["batch", "x.mp4", "-o", "out", "--blend", "-1"],
        ["restore", "x.mp4", "--no-such-flag"],
    ],
)
def test_a_bad_option_is_answered_before_the_heavy_imports(argv):
    """A one-line option error must come back in well under a second: the pipeline (torch, av, scipy, cv2) is
    not imported to say it. Checked by the modules loaded, not by the clock."""
    rc, heavy, done = _loaded_after(argv, ("torch", "av", "scipy", "cv2", "onnxruntime"))
    assert rc == "2", done.stdout + done.stderr
    assert heavy == "", f"imported {heavy} before answering a bad option"
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_identity_run_without_faces_starts_without_torch_or_the_matching(tmp_path):
    """Start-up to the first frame is imports, mostly: an identity run needs no torch (only a model, a device
    path or a background upscale does), and footage without faces never pairs detections with tracks."""
    from gpen_video.synthetic import ClipSpec, FaceScene, write_clip

    clip = write_clip(tmp_path / "plain.mp4", ClipSpec(scene=FaceScene(width=160, height=96, frames=6, faces=False)))
    argv = ["restore", str(clip), "-o", str(tmp_path / "out.mp4"), "--model", "identity", "-q"]
    rc, heavy, done = _loaded_after(argv, ("torch", "scipy.optimize"))
    assert rc == "0", done.stdout + done.stderr
    assert heavy == "", f"imported {heavy} for an identity run of faceless footage"
    assert (tmp_path / "out.mp4").is_file()
