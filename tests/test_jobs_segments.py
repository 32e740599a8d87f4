"""Segments: planning on key frames, exact assembly (VFR), and resume after SIGKILL."""

from __future__ import annotations

import itertools
import json
import logging
import signal
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import pytest
from jobs_helpers import FACES, LONG, VFR, killed_in_segment, longer, outcome, same_media, summary, write
from media_checks import frame_times, side_packets

from gpen_video.cli import main
from gpen_video.jobs.inputs import record_key
from gpen_video.jobs.packet_index import PacketIndex
from gpen_video.jobs.planner import PlanSettings, plan_segments


def batch(*args: str | Path) -> int:
    return main(["batch", *map(str, args), "--model", "identity", "-q"])


def test_plan_cuts_on_key_frames_with_warmup_and_lookahead() -> None:
    tb = Fraction(1, 24)
    pts = list(range(0, 240))  # 10 s at 24 fps
    keyframes = list(range(0, 240, 30))  # every 1.25 s
    plan = plan_segments(PacketIndex(pts, keyframes, tb), PlanSettings(3.0, warmup_frames=10, lookahead_frames=12))
    assert [s.emit_start for s in plan] == [0, 90, 180]  # first key frame at least 3 s after the last start
    assert [s.emit_end for s in plan] == [90, 180, None]
    assert sum(s.frames for s in plan) == 240
    middle = plan[1]
    assert int(Fraction(middle.decode_from).limit_denominator(10**6) / tb) == 90 - 10 - 1  # a quarter tick early
    assert round(middle.decode_until / tb, 3) == 180 + 12 - 0.5  # stops half a tick before frame 192
    assert plan[-1].decode_until is None
    assert len(plan_segments(PacketIndex(pts, keyframes, tb), PlanSettings(0))) == 1  # 0: whole file
    assert len(plan_segments(PacketIndex(pts, [0], tb), PlanSettings(1.0))) == 1  # no key frame to cut on


def test_segment_assembly_keeps_vfr_timestamps_exact(tmp_path: Path) -> None:
    clip = write(tmp_path, "phone.mp4", VFR)
    assert batch(clip, "-o", tmp_path / "out", "--segment-seconds", "0.5", "--summary", tmp_path / "s.json") == 0
    row = outcome(summary(tmp_path / "s.json"), "phone.mp4")
    assert row["segments"] >= 3
    restored = tmp_path / "out" / "phone.mp4"
    times = frame_times(clip)
    assert len(set(b - a for a, b in itertools.pairwise(times))) > 2  # really variable frame rate
    assert frame_times(restored) == times  # every frame, at its exact source time
    assert side_packets(restored) == side_packets(clip)
    assert _presentation_end(restored) == _presentation_end(clip)  # the last frame lasts as long as the source's


def _presentation_end(path: Path) -> Fraction:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        last = max((p for p in container.demux(stream) if p.size), key=lambda p: p.pts)
        return (last.pts + last.duration) * last.time_base


@pytest.mark.slow
def test_sigkill_then_resume_reuses_finished_segments_and_matches_uninterrupted(tmp_path: Path, caplog) -> None:
    name = "long.mov"
    clip = write(tmp_path / "in", name, LONG)  # 5 s: five 1-second segments
    # The recomputed segments must come out bit-identical to the uninterrupted run's. ProRes here (an intra
    # codec, its own assembly path); the default x264 path is killed and resumed in test_determinism.py.
    codec = ("--video-codec", "prores_ks")
    reference = tmp_path / "uninterrupted"
    assert batch(clip, "-o", reference, "--segment-seconds", "1", *codec) == 0

    out = tmp_path / "killed"
    record = out / ".gpen-video-job" / "files" / f"{record_key(Path(name))}.json"
    args = [str(clip), "-o", str(out), "--model", "identity", "--segment-seconds", "1", *codec, "-q"]
    # The process kills itself (SIGKILL: no handler, no cleanup) half-way through segment 2's frames, once
    # segments 0 and 1 are recorded and segment 2's partial file is on disk: the same moment on every run, where
    # polling the record from here raced the job (on a loaded machine it could finish before the kill).
    proc = subprocess.run([sys.executable, "-c", killed_in_segment(2, 12), json.dumps(args)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=300)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert [p.name for p in (out / ".gpen-video-job" / "work").rglob("*.partial-*")], "segment 2 was not half-written"
    finished = sorted(int(k) for k in json.loads(record.read_text())["segments"])
    assert finished == [0, 1]
    assert not (out / name).exists()  # nothing half-written at the output path

    caplog.set_level(logging.INFO, logger="gpen_video.jobs.runner")  # why a segment is not reused, if it is not
    assert batch(clip, "-o", out, "--segment-seconds", "1", *codec, "--summary", tmp_path / "resume.json") == 0
    row = outcome(summary(tmp_path / "resume.json"), name)
    assert row["segments_reused"] == finished, caplog.text
    assert row["segments_computed"] == [i for i in range(5) if i not in finished]
    same_media(out / name, reference / name)  # frames, timestamps and audio
    assert (out / name).read_bytes() == (reference / name).read_bytes()
    assert frame_times(out / name) == frame_times(clip)
    assert not any((out / ".gpen-video-job" / "work").iterdir())
    assert not [p for p in out.iterdir() if ".partial-" in p.name]


@pytest.mark.slow
def test_ctrl_c_and_a_failed_segment_keep_finished_segments(tmp_path: Path, monkeypatch) -> None:
    from gpen_video.jobs import engine_local

    clip = write(tmp_path, "clip.mp4", LONG)
    real = engine_local.execute_segment
    calls: list[int] = []

    def interrupted(task, restorers, progress=None):
        calls.append(task.index)
        if task.index == 2:
            raise KeyboardInterrupt
        return real(task, restorers, progress)

    monkeypatch.setattr(engine_local, "execute_segment", interrupted)
    assert batch(clip, "-o", tmp_path / "out", "--segment-seconds", "1") == 130
    assert calls == [0, 1, 2] and not (tmp_path / "out" / "clip.mp4").exists()

    def failing(task, restorers, progress=None):
        done = real(task, restorers, progress)
        return replace(done, frames=0, error="disk on fire") if task.index == 3 else done

    monkeypatch.setattr(engine_local, "execute_segment", failing)
    args = ("--segment-seconds", "1", "--summary", tmp_path / "a.json")
    assert batch(clip, "-o", tmp_path / "out", *args) == 1
    row = outcome(summary(tmp_path / "a.json"), "clip.mp4")
    assert row["segments_reused"] == [0, 1] and row["error"] == "segment 3: disk on fire"

    # another setting: the finished segments (0, 1, 2) were made with other settings and are not reused
    args = ("--segment-seconds", "1", "--blend", "0.5", "--summary", tmp_path / "b.json")
    assert batch(clip, "-o", tmp_path / "out", *args) == 1
    row = outcome(summary(tmp_path / "b.json"), "clip.mp4")
    assert row["segments_reused"] == [] and row["segments_computed"] == [0, 1, 2]

    monkeypatch.setattr(engine_local, "execute_segment", real)
    args = ("--segment-seconds", "1", "--blend", "0.5", "--summary", tmp_path / "c.json")
    assert batch(clip, "-o", tmp_path / "out", *args) == 1
    assert "--retry-failed" in outcome(summary(tmp_path / "c.json"), "clip.mp4")["error"]
    args = ("--segment-seconds", "1", "--blend", "0.5", "--retry-failed", "--summary", tmp_path / "c.json")
    assert batch(clip, "-o", tmp_path / "out", *args) == 0
    row = outcome(summary(tmp_path / "c.json"), "clip.mp4")
    assert row["segments_reused"] == [0, 1, 2] and row["segments_computed"] == [3, 4]  # 4 was dropped with 3
    assert frame_times(tmp_path / "out" / "clip.mp4") == frame_times(clip)


def test_interrupted_assembly_resumes_from_the_recorded_segments(tmp_path: Path, monkeypatch) -> None:
    from gpen_video.jobs import runner

    clip = write(tmp_path, "clip.mp4", longer(LONG, 48))
    real = runner.assemble

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "assemble", killed)
    assert batch(clip, "-o", tmp_path / "out", "--segment-seconds", "1") == 130
    monkeypatch.setattr(runner, "assemble", real)
    assert batch(clip, "-o", tmp_path / "out", "--segment-seconds", "1", "--summary", tmp_path / "s.json") == 0
    row = outcome(summary(tmp_path / "s.json"), "clip.mp4")
    assert row["segments_reused"] == [0, 1] and row["segments_computed"] == []
    assert frame_times(tmp_path / "out" / "clip.mp4") == frame_times(clip)


def test_lookahead_is_what_the_faces_stage_holds_back() -> None:
    """A segment decodes past its last frame exactly as many frames as the faces stage holds back before it
    releases a frame (a released frame is final): no fewer, or the seam changes; no more, or it reads for nothing."""
    from gpen_video.config import FacesConfig
    from gpen_video.faces.stage import FaceStage

    configs = (FacesConfig(), FacesConfig(smooth=False), FacesConfig(smooth_window=20), FacesConfig(max_gap=30),
               FacesConfig(smooth=False, max_gap=0, min_track_length=1), FacesConfig(min_track_length=12))  # fmt: skip
    for config in configs:
        stage = FaceStage(config, detector=object())  # the detector is not used to tell the look-ahead
        assert PlanSettings.for_faces(config, 1.0).lookahead_frames == stage.lookahead, config


@pytest.mark.slow
def test_first_segment_is_the_unsegmented_run_bit_for_bit_up_to_the_seam(tmp_path: Path, monkeypatch) -> None:
    """Segment 0 stops decoding the faces stage's look-ahead past the seam: its frames are those of one restore
    of the whole file, bit for bit (lossless FFV1); half the look-ahead changes them (the test can tell). The last
    frame of the window weighs nothing in the smoothing here (8 frames give the same), the stage holds 9 back."""
    import numpy as np
    from media_checks import video_planes

    from gpen_video.jobs import runner

    clip = write(tmp_path, "faces.mkv", FACES)  # 48 frames with faces, a key frame every 24: two segments
    lossless = ("--video-codec", "ffv1")
    assert main(["restore", str(clip), "-o", str(tmp_path / "whole.mkv"), "--model", "identity", "-q", *lossless]) == 0
    assert batch(clip, "-o", tmp_path / "seg", "--segment-seconds", "1", *lossless) == 0
    whole, segmented, source = (video_planes(p) for p in (tmp_path / "whole.mkv", tmp_path / "seg" / clip.name, clip))
    assert len(whole) == len(segmented) == 48

    def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    assert all(not same(w, s) for w, s in zip(whole[:24], source[:24], strict=True))  # faces restored on every frame
    assert all(same(w, s) for w, s in zip(whole[:24], segmented[:24], strict=True))

    planned = runner.PlanSettings.for_faces

    def shorter(*args, **kwargs):  # type: ignore[no-untyped-def]
        settings = planned(*args, **kwargs)
        return replace(settings, lookahead_frames=settings.lookahead_frames // 2)

    monkeypatch.setattr(runner.PlanSettings, "for_faces", shorter)
    assert batch(clip, "-o", tmp_path / "short", "--segment-seconds", "1", *lossless) == 0
    cut_short = video_planes(tmp_path / "short" / clip.name)
    assert not all(same(w, s) for w, s in zip(whole[:24], cut_short[:24], strict=True))
