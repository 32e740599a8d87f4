"""Text subtitles (SubRip, ASS) into MP4/MOV: converted to mov_text, as the ffmpeg CLI converts them, and said so.

Inputs are made with the ffmpeg CLI; the truth for each output is the ffmpeg CLI's own conversion of the same
source (``-c:s mov_text``), both read back as SRT by the ffmpeg CLI.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conformance_cases import ass_script, ffmpeg, ffmpeg_exe, ffprobe_exe

from gpen_video.cli import main

FFMPEG = ffmpeg_exe()
FFPROBE = ffprobe_exe() or "ffprobe"
SRT = "1\n00:00:00,500 --> 00:00:01,200\nHello there\n\n2\n00:00:01,500 --> 00:00:02,400\nSecond line\n"
ASS = ass_script("0:00:00.50,0:00:01.20,Hello {\\i1}there{\\i0}", "0:00:01.50,0:00:02.40,Second line")


pytestmark = pytest.mark.usefixtures("restore_gpen_logger")  # these tests call main() in-process


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("subs")
    (folder / "s.srt").write_text(SRT)
    (folder / "s.ass").write_text(ASS)
    made = {}
    for kind, codec in (("srt", "srt"), ("ass", "ass")):
        made[kind] = folder / f"{kind}.mkv"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-i", folder / f"s.{kind}", "-t", "3",
                "-map", "0:v", "-map", "1", "-c:v", "mpeg4", "-c:s", codec, "-metadata:s:s:0", "language=fra",
                made[kind])  # fmt: skip
    return made


def _as_srt(path: Path) -> str:
    return subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:s:0", "-f", "srt", "-"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def _subtitle_stream(path: Path) -> str:
    return subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", "s", "-show_entries", "stream=codec_name:stream_tags=language",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.mark.parametrize("kind", ["srt", "ass"])
@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_text_subtitles_are_converted_to_mov_text_like_the_cli(sources, tmp_path, capsys, kind, ext):
    src, out, ref = sources[kind], tmp_path / f"out{ext}", tmp_path / f"ref{ext}"
    assert main(["restore", str(src), "-o", str(out), "--model", "identity", "-q"]) == 0
    ffmpeg("-i", src, "-map", "0:s", "-c:s", "mov_text", ref)
    assert _subtitle_stream(out) == "mov_text,fra"
    assert _as_srt(out) == _as_srt(ref)
    assert "Second line" in _as_srt(out) and "00:00:01,500 --> 00:00:02,400" in _as_srt(out)
    err = capsys.readouterr().err
    assert "stream #1" in err and "converted to mov_text" in err, err  # said even with -q


def test_a_partial_restore_shifts_the_subtitles_with_the_video(sources, tmp_path):
    out = tmp_path / "part.mp4"
    assert main(["restore", str(sources["srt"]), "-o", str(out), "--model", "identity", "--start", "1", "-q"]) == 0
    text = _as_srt(out)
    assert "Hello there" not in text  # ended before the range
    assert "00:00:00,500 --> 00:00:01,400\nSecond line" in text, text
