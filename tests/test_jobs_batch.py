"""Batch jobs: discovery, manifests, a broken file among good ones, resume, settings changes, errors."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from jobs_helpers import FACES, LONG, VFR, broken, longer, outcome, summary, write
from media_checks import frame_times, side_packets, video_planes

from gpen_video.cli import main
from gpen_video.jobs import runner
from gpen_video.jobs.inputs import discover
from gpen_video.synthetic import AudioTrack


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive folder: two good clips (one in a sub-folder, one with faces), one broken, one non-video."""
    root = tmp_path_factory.mktemp("archive")
    write(root, "reel.mp4", longer(LONG, 48))
    write(root / "tapes", "phone.mov", VFR)
    write(root / "tapes", "faces.mkv", FACES)
    broken(root / "tapes" / "damaged.mp4")
    (root / "notes.txt").write_text("not a video, not a manifest given on the command line\n")
    return root


def batch(*args: str | Path) -> int:
    return main(["batch", *map(str, args), "--model", "identity", "-q"])


@pytest.mark.slow
def test_batch_finishes_good_files_and_reports_the_broken_one(archive: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "restored"
    rc = batch(archive, "-o", out, "--segment-seconds", "1", "--summary", tmp_path / "s.json")
    err = capsys.readouterr().err
    assert rc == 1
    assert "1 of 4 file(s) failed" in err and "damaged.mp4" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*") if ".gpen-video-job" not in p.parts) == [
        "reel.mp4",
        "tapes/faces.mkv",
        "tapes/phone.mov",
    ]  # outputs mirror the input tree; no temporary file is left beside them
    data = summary(tmp_path / "s.json")
    assert data["counts"] == {"done": 3, "skipped": 0, "failed": 1}
    assert "not a media file" in outcome(data, "damaged.mp4")["error"]
    faces = outcome(data, "faces.mkv")
    assert faces["status"] == "done" and faces["segments"] == 2 and faces["frames"] == 48
    assert faces["faces_restored"] >= 48  # the faces stage worked on both sides of the segment boundary
    for name in ("reel.mp4", "tapes/phone.mov", "tapes/faces.mkv"):
        source, restored = archive / name, out / name
        assert frame_times(restored) == frame_times(source)
        assert side_packets(restored) == side_packets(source)  # audio copied bit for bit, both tracks
    assert not list((out / ".gpen-video-job" / "work").iterdir())  # segment files cleaned after assembly

    # the same command again: finished files are skipped, the broken one is still reported (not retried)
    rc = batch(archive, "-o", out, "--segment-seconds", "1", "--summary", tmp_path / "s2.json")
    assert rc == 1
    again = summary(tmp_path / "s2.json")
    assert again["counts"] == {"done": 0, "skipped": 3, "failed": 1}
    assert "--retry-failed" in outcome(again, "damaged.mp4")["error"]
    assert batch(archive, "-o", out, "--retry-failed", "--segment-seconds", "1", "--summary", tmp_path / "s3.json")
    assert outcome(summary(tmp_path / "s3.json"), "damaged.mp4")["error"].endswith("(invalid data)")


def test_changed_setting_or_input_invalidates_reuse(tmp_path: Path) -> None:
    clip = write(tmp_path / "in", "clip.mp4", longer(LONG, 48))
    out = tmp_path / "out"
    assert batch(clip, "-o", out, "--segment-seconds", "1", "--summary", tmp_path / "a.json") == 0
    first = video_planes(out / "clip.mp4")
    assert batch(clip, "-o", out, "--segment-seconds", "1", "--summary", tmp_path / "b.json") == 0
    assert outcome(summary(tmp_path / "b.json"), "clip.mp4")["status"] == "skipped"

    assert batch(clip, "-o", out, "--segment-seconds", "1", "--crf", "30", "--summary", tmp_path / "c.json") == 0
    row = outcome(summary(tmp_path / "c.json"), "clip.mp4")
    assert row["status"] == "done" and row["segments_reused"] == [] and row["segments_computed"] == [0, 1]
    recoded = video_planes(out / "clip.mp4")
    assert any((a[0] != b[0]).any() for a, b in zip(first, recoded, strict=True))  # really re-encoded at crf 30

    # a new input under the same name (other size, mtime, content): recomputed, not mixed with old segments
    clip.unlink()
    write(tmp_path / "in", "clip.mp4", longer(LONG, 36))
    assert batch(clip, "-o", out, "--segment-seconds", "1", "--crf", "30", "--summary", tmp_path / "d.json") == 0
    row = outcome(summary(tmp_path / "d.json"), "clip.mp4")
    assert row["status"] == "done" and row["frames"] == 36
    assert len(frame_times(out / "clip.mp4")) == 36


@pytest.mark.slow
def test_manifests_with_per_file_options(tmp_path: Path) -> None:
    src = tmp_path / "src"
    a = write(src, "a.mp4", longer(FACES, 24))
    write(src / "deep", "b.mp4", longer(LONG, 24))
    (src / "list.txt").write_text("# one path a line\na.mp4\n\ndeep/b.mp4\n")
    (src / "jobs.csv").write_text("input,output,compose.blend,crf\na.mp4,blend0.mp4,0,\ndeep/b.mp4,,,28\n")
    items = discover([src / "list.txt"], tmp_path / "o1")
    assert [(i.input.name, i.output.relative_to(tmp_path / "o1").as_posix()) for i in items] == [
        ("a.mp4", "a.mp4"),
        ("b.mp4", "deep/b.mp4"),
    ]
    csv_items = discover([src / "jobs.csv"], tmp_path / "o2")
    assert [i.overrides for i in csv_items] == [{"compose.blend": "0"}, {"output.crf": "28"}]

    out = tmp_path / "o2"
    assert batch(src / "jobs.csv", "-o", out, "--summary", tmp_path / "s.json") == 0
    assert (out / "blend0.mp4").is_file() and (out / "deep" / "b.mp4").is_file()
    # blend 0 pastes the source back: the faces come out as the input's samples through one encode
    assert batch(a, "-o", tmp_path / "o3") == 0
    assert frame_times(out / "blend0.mp4") == frame_times(a)

    (src / "bad.jsonl").write_text(json.dumps({"input": "a.mp4", "compose.blnd": 0.5}) + "\n")
    assert batch(src / "bad.jsonl", "-o", tmp_path / "o4") == 2
    assert batch(tmp_path / "nowhere", "-o", tmp_path / "o5") == 2


def test_two_inputs_on_one_output_are_refused(tmp_path: Path, capsys) -> None:
    a = write(tmp_path / "x", "same.mp4", longer(LONG, 12))
    shutil.copy(a, tmp_path / "same.mp4")
    assert batch(a, tmp_path / "same.mp4", "-o", tmp_path / "out") == 2
    assert "would both be written to" in capsys.readouterr().err


def test_ray_missing_gives_a_one_line_install_hint(tmp_path: Path, monkeypatch, capsys) -> None:
    clip = write(tmp_path, "c.mp4", longer(LONG, 12))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert batch(clip, "-o", tmp_path / "out", "--engine", "ray") == 2
    err = capsys.readouterr().err.strip()
    assert err == "gpen-video: error: --engine ray needs Ray: pip install 'gpen-video[ray]'"


def test_not_enough_disk_space_fails_the_file_before_work(tmp_path: Path, monkeypatch) -> None:
    clip = write(tmp_path, "c.mp4", longer(LONG, 12))
    real = shutil.disk_usage

    def tiny(path: os.PathLike) -> object:
        usage = real(path)
        return type(usage)(usage.total, usage.total - 1000, 1000)

    monkeypatch.setattr(runner.shutil, "disk_usage", tiny)
    assert batch(clip, "-o", tmp_path / "out", "--summary", tmp_path / "s.json") == 1
    row = outcome(summary(tmp_path / "s.json"), "c.mp4")
    assert "free" in row["error"] and "--job-dir" in row["error"]
    assert "only 1.00 kB" in row["error"] and "0.00 GB" not in row["error"]  # sizes in a unit that reads
    assert not (tmp_path / "out" / "c.mp4").exists()


def test_existing_output_of_another_run_needs_overwrite(tmp_path: Path) -> None:
    clip = write(tmp_path, "c.mp4", longer(LONG, 12))
    out = tmp_path / "out"
    out.mkdir()
    (out / "c.mp4").write_bytes(b"someone else's file")
    assert batch(clip, "-o", out, "--summary", tmp_path / "s.json") == 1
    assert "--overwrite" in outcome(summary(tmp_path / "s.json"), "c.mp4")["error"]
    assert batch(clip, "-o", out, "--overwrite") == 0
    assert frame_times(out / "c.mp4") == frame_times(clip)
    # a complete output with no job record (job folder deleted) counts as done on resume
    shutil.rmtree(out / ".gpen-video-job")
    assert batch(clip, "-o", out, "--summary", tmp_path / "s2.json") == 0
    assert outcome(summary(tmp_path / "s2.json"), "c.mp4")["status"] == "skipped"


def test_pcm_audio_in_mov_stays_bit_identical(tmp_path: Path) -> None:
    from dataclasses import replace

    spec = replace(longer(LONG, 36), audio=(AudioTrack(codec="pcm_s16le"),))
    clip = write(tmp_path, "pcm.mov", spec)
    assert batch(clip, "-o", tmp_path / "out", "--segment-seconds", "1") == 0
    assert side_packets(tmp_path / "out" / "pcm.mov") == side_packets(clip)


def test_ray_workers_get_one_gpu_when_cuda_is_requested() -> None:
    from gpen_video.errors import ConfigError
    from gpen_video.jobs.engine_ray import wants_gpu

    assert wants_gpu("cuda", 4) and wants_gpu("cuda:1", 1) and wants_gpu("auto", 2)
    assert not wants_gpu("cpu", 4) and not wants_gpu("auto", 0)
    with pytest.raises(ConfigError, match="no GPU"):
        wants_gpu("cuda", 0)


def test_batch_refuses_a_time_range(tmp_path: Path, capsys) -> None:
    clip = write(tmp_path, "c.mp4", longer(LONG, 12))
    assert batch(clip, "-o", tmp_path / "out", "--start", "1") == 2
    assert "whole files" in capsys.readouterr().err


def test_assembled_matroska_keeps_the_source_frame_rate(tmp_path: Path) -> None:
    """Issue 12's bug: batch-assembled MKV files said 1000 fps (the segment files' guessed rate)."""
    import subprocess

    from conformance_cases import ffmpeg
    from read_counting import FFPROBE

    src = tmp_path / "in" / "clip.mkv"
    src.parent.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "3", "-c:v", "libx264", "-g", "25", src)
    assert batch(src, "-o", tmp_path / "out", "--segment-seconds", "1") == 0
    rates = subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=r_frame_rate,avg_frame_rate",
         "-of", "csv=p=0", str(tmp_path / "out" / "clip.mkv")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert rates == "25/1,25/1"
    assert frame_times(tmp_path / "out" / "clip.mkv") == frame_times(src)


def test_the_frame_bar_measures_a_rate_and_shows_the_time_left(monkeypatch):
    """The batch's frame bar counts frames through tqdm's update (issue 25: long runs showed no ETA); a resumed
    file's frames already done join the count without faking a rate."""
    import io
    import time
    from types import SimpleNamespace

    from gpen_video.jobs.batch_cli import _Bars

    bars = _Bars(1, disable=False)
    bars.frame_bar.fp = bars.file_bar.fp = io.StringIO()
    item = SimpleNamespace(key="k", input=SimpleNamespace(name="reel.mov"))
    bars.file_started(item, 1000, 400)
    assert bars.frame_bar.format_dict["rate"] is None  # resumed frames are no rate sample
    for _ in range(5):
        time.sleep(0.01)
        bars.frames("k", 10)
    shown = str(bars.frame_bar)
    assert bars.frame_bar.n == 450 and bars.frame_bar.total == 1000
    assert "?" not in shown.split("[", 1)[1], shown  # elapsed<remaining, rate: all measured
    bars.file_finished(item, None)
    assert bars.frame_bar.n == 0
    bars.close()


def test_a_disabled_frame_bar_still_counts():
    from types import SimpleNamespace

    from gpen_video.jobs.batch_cli import _Bars

    bars = _Bars(1, disable=True)  # -q, or no terminal
    item = SimpleNamespace(key="k", input=SimpleNamespace(name="reel.mov"))
    bars.file_started(item, 100, 30)
    bars.frames("k", 5)
    assert bars.active["k"] == [35, 100]  # what the bar would show; a disabled tqdm keeps no count
    bars.file_finished(item, None)
    assert bars.active == {}
    bars.close()
