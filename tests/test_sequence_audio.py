"""``--audio FILE.wav`` with an image sequence: muxed into a video output, sample 0 at the first frame; refused
for a folder output. The sequence and the WAV are made with the ffmpeg CLI; the output is checked with ffprobe
and with the samples the ffmpeg CLI decodes from it, never with the code under test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conformance_cases import ffmpeg, ffmpeg_exe, ffprobe_json

from gpen_video.cli import main

FFMPEG = ffmpeg_exe()


pytestmark = pytest.mark.usefixtures("restore_gpen_logger")  # these tests call main() in-process


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> tuple[Path, Path]:
    """24 PNG frames (1 s at --fps 24) and a 1-s WAV (48 kHz, 16-bit stereo)."""
    folder = tmp_path_factory.mktemp("scan")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24", "-frames:v", "24", folder / "reel_%04d.png")
    wav = folder / "sound.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-af", "pan=stereo|c0=c0|c1=0.5*c0",
            "-t", "1", "-c:a", "pcm_s16le", wav)  # fmt: skip
    return folder / "reel_%04d.png", wav


def _audio_stream(path: Path) -> dict:
    entries = "stream=codec_name,start_time,duration,sample_rate,channels"
    return ffprobe_json(path, "-select_streams", "a", "-show_entries", entries)["streams"]


def _samples(path: Path) -> bytes:
    return subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-c:a", "pcm_s16le", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip


def _restore(pattern: Path, out: Path, wav: Path) -> int:
    return main(["restore", str(pattern), "-o", str(out), "--model", "identity", "--fps", "24",
                 "--audio", str(wav), "-q"])  # fmt: skip


@pytest.mark.parametrize("ext", ["mov", "mkv"])
def test_wav_is_copied_sample_exact_where_the_container_holds_pcm(scan, tmp_path, ext):
    pattern, wav = scan
    out = tmp_path / f"out.{ext}"
    assert _restore(pattern, out, wav) == 0
    (audio,) = _audio_stream(out)
    assert audio["codec_name"] == "pcm_s16le" and int(audio["sample_rate"]) == 48000 and audio["channels"] == 2
    assert float(audio["start_time"]) == 0.0
    if "duration" in audio:  # Matroska keeps durations in tags only
        assert abs(float(audio["duration"]) - 1.0) < 1e-3
    assert _samples(out) == _samples(wav)
    assert len(_samples(wav)) == 48000 * 2 * 2


def test_wav_is_encoded_where_the_container_cannot_hold_pcm(scan, tmp_path, caplog):
    pattern, wav = scan
    out = tmp_path / "out.mp4"
    assert _restore(pattern, out, wav) == 0
    (audio,) = _audio_stream(out)
    assert audio["codec_name"] != "pcm_s16le" and int(audio["sample_rate"]) == 48000
    assert abs(float(audio["start_time"])) < 1e-3  # the encoder's priming is hidden by the edit list
    assert abs(float(audio["duration"]) - 1.0) < 0.05  # within one AAC frame (1024 samples)


def test_audio_with_a_folder_output_is_refused_in_one_line(scan, tmp_path, capsys):
    pattern, wav = scan
    assert _restore(pattern, tmp_path / "frames", wav) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--audio" in err and "video" in err, err
    assert not (tmp_path / "frames").exists() or not any((tmp_path / "frames").iterdir())


def test_an_unreadable_audio_file_is_refused_in_one_line(scan, tmp_path, capsys):
    pattern, _ = scan
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    assert _restore(pattern, tmp_path / "out.mov", bad) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--audio" in err, err
    assert not (tmp_path / "out.mov").exists()


def _duration(path: Path) -> float:
    """Seconds of audio in ``path``'s first audio stream, from the samples the ffmpeg CLI decodes (s16 stereo)."""
    return len(_samples(path)) / (48000 * 2 * 2)


@pytest.mark.parametrize("ext", ["mov", "mkv"])
def test_a_longer_wav_is_cut_to_the_pictures_length_at_the_sample(scan, tmp_path, capsys, ext):
    pattern, _ = scan
    long_wav = tmp_path / "long.wav"  # 2.5 s for 1 s of frames; 48000 samples is not a whole number of packets
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000", "-af", "pan=stereo|c0=c0|c1=0.25*c0",
           "-t", "2.5", "-c:a", "pcm_s16le", long_wav)  # fmt: skip
    out, report = tmp_path / f"out.{ext}", tmp_path / "report.json"
    assert main(["restore", str(pattern), "-o", str(out), "--model", "identity", "--fps", "24", "--audio",
                 str(long_wav), "-q", "--report", str(report)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "1.500 s longer than the pictures' 1.000 s (24 fps); cut to their length" in err  # said even with -q
    assert _duration(out) == 1.0  # 48000 samples exactly
    assert _samples(out) == _samples(long_wav)[: 48000 * 2 * 2]  # the first second, bit for bit
    if ext == "mov":
        (audio,) = _audio_stream(out)
        assert abs(float(audio["duration"]) - 1.0) < 1e-3
    assert any("cut to their length" in w for w in json.loads(report.read_text())["warnings"])


def test_a_shorter_wav_is_said_with_by_how_much(scan, tmp_path, capsys):
    pattern, _ = scan
    short = tmp_path / "short.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000", "-af", "pan=stereo|c0=c0|c1=c0",
           "-t", "0.6", "-c:a", "pcm_s16le", short)  # fmt: skip
    out = tmp_path / "out.mov"
    assert _restore(pattern, out, short) == 0
    assert "ends 0.400 s before the end of the pictures' 1.000 s (24 fps)" in capsys.readouterr().err
    assert _samples(out) == _samples(short)  # all of it, nothing added
    assert _duration(out) == pytest.approx(0.6)


def test_a_wav_as_long_as_the_pictures_is_not_remarked_on(scan, tmp_path, capsys):
    pattern, wav = scan
    assert _restore(pattern, tmp_path / "out.mkv", wav) == 0
    assert "--audio" not in capsys.readouterr().err
