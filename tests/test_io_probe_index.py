"""Probe from the container's index: no packet data read on MOV/MP4/AVI, cues and the first cluster on MKV.

Inputs are made with the ffmpeg CLI; what each frame's bytes are and where they lie comes from ffprobe.
Every ``av.open`` of the input goes through a counting file object (tests/read_counting.py).
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pytest
from conformance_cases import ffmpeg
from media_checks import frame_times
from read_counting import counting_reads, packet_spans, video_packets

from gpen_video.cli import main
from gpen_video.config import FacesConfig
from gpen_video.io.probe import probe
from gpen_video.jobs.packet_index import index_packets
from gpen_video.jobs.planner import PlanSettings, plan_segments

# 2 s at 25 fps of intra MPEG-4 (40 kB and more a frame, more than a read buffer), a key frame every 10
SOURCE = ("-f", "lavfi", "-i", "testsrc2=size=640x480:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "2")
VIDEO = ("-c:v", "mpeg4", "-q:v", "1", "-g", "10")
MAKE = {
    "mov": (*VIDEO, "-c:a", "pcm_s16le"),
    "mp4": (*VIDEO, "-c:a", "aac"),
    "avi": (*VIDEO, "-c:a", "pcm_s16le"),
    "mkv": (*VIDEO, "-c:a", "pcm_s16le", "-cluster_size_limit", "60000"),  # clusters of about 3 frames
    "ts": ("-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac"),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("indexed")
    made = {}
    for ext, args in MAKE.items():
        made[ext] = folder / f"clip.{ext}"
        ffmpeg(*SOURCE, *args, made[ext])
    made["faststart"] = folder / "faststart.mov"  # the index before the data: a cut file still opens
    ffmpeg(*SOURCE, *VIDEO, "-c:a", "pcm_s16le", "-movflags", "+faststart", made["faststart"])
    return made


def _keyframes(path: Path) -> int:
    return sum("K" in p["flags"] for p in video_packets(path))


@pytest.mark.parametrize("ext", ["mov", "mp4", "avi"])
def test_probe_reads_no_packet_data_from_an_indexed_container(ext, clips, monkeypatch):
    path = clips[ext]
    spans = packet_spans(path)
    with counting_reads(monkeypatch, path) as log:
        info = probe(path)
    assert log.opens == 1
    # only the first frame is decoded (colour tags, rotation): what is read of the frames is that, the
    # decoder's delay and one read buffer; 50 frames of over 18 kB each
    assert max(log.touched(spans)) <= 3, log.touched(spans)
    assert log.distinct_bytes < 0.12 * path.stat().st_size
    assert info.video.frame_count_source == "index"
    assert info.video.frame_count == len(spans) == 50
    assert info.video.keyframe_count == _keyframes(path) == 5
    assert info.video.is_vfr is False and info.video.duration == pytest.approx(2.0)
    assert info.missing_frames == 0
    exact = probe(path, exact=True)
    assert exact.video.frame_count_source == "scan"
    assert (exact.video.frame_count, exact.video.keyframe_count) == (50, 5)
    assert [s.packets for s in info.streams] == [s.packets for s in exact.streams]  # audio counted from its index


def test_probe_reads_only_cues_and_first_cluster_of_matroska(clips, monkeypatch):
    path = clips["mkv"]
    spans = packet_spans(path)
    with counting_reads(monkeypatch, path) as log:
        info = probe(path)
    touched = log.touched(spans)
    assert touched and max(touched) <= 3, touched  # the first cluster (about 3 frames), nothing after it
    assert log.bytes_read < 0.2 * path.stat().st_size
    assert info.video.frame_count_source == "estimate"
    assert info.video.frame_count == len(spans) == 50  # duration × rate, exact for a constant rate
    assert info.video.keyframe_count >= 1  # the cue points: key frames or cluster starts


def test_probe_estimates_without_index_and_exact_scans(clips, run_cli):
    path = clips["ts"]
    estimated = json.loads(run_cli("probe", path, "--json").stdout)["video"]
    assert estimated["frame_count_source"] == "estimate" and estimated["frame_count"] == 50
    result = run_cli("probe", path, "--json", "--exact")
    assert result.returncode == 0, result.stderr
    exact = json.loads(result.stdout)["video"]
    assert exact["frame_count_source"] == "scan"
    assert exact["frame_count"] == len(video_packets(path)) and exact["keyframe_count"] == _keyframes(path)
    text = run_cli("probe", path).stdout
    assert "50 frames (estimated)" in text


def test_truncated_tail_is_caught_by_the_index(clips, tmp_path, caplog, capsys):
    source = clips["faststart"]
    data = source.read_bytes()
    cut = int(len(data) * 0.6)
    path = tmp_path / "cut.mov"
    path.write_bytes(data[:cut])
    whole = packet_spans(source)
    complete = sum(pos + size <= cut for pos, size in whole)
    assert 10 < complete < len(whole)
    with caplog.at_level(logging.WARNING, logger="gpen_video"):
        info = probe(path)
    assert info.video.frame_count_source == "index"
    assert info.video.frame_count == complete and info.missing_frames == len(whole) - complete
    assert "truncated" in caplog.text
    output = tmp_path / "cut.restored.mov"
    capsys.readouterr()
    assert main(["restore", str(path), "-o", str(output), "--model", "identity"]) == 0
    assert "the input looks truncated" in capsys.readouterr().err  # said once, by the decode that met the cut
    assert len(frame_times(output)) == len(frame_times(path)) >= complete - 1


def test_truncated_tail_is_caught_by_the_scan_and_by_the_decode(clips, tmp_path, capsys):
    # MPEG-TS: no index; the exact scan counts the packets that are there
    ts = tmp_path / "cut.ts"
    ts.write_bytes(clips["ts"].read_bytes()[: int(clips["ts"].stat().st_size * 0.5)])
    exact = probe(ts, exact=True)
    assert exact.video.frame_count == len(video_packets(ts)) < 50
    # Matroska cut in half: its header still says 2 s; the batch's decode finds fewer frames and says so
    mkv = tmp_path / "in" / "cut.mkv"
    mkv.parent.mkdir()
    mkv.write_bytes(clips["mkv"].read_bytes()[: int(clips["mkv"].stat().st_size * 0.5)])
    assert probe(mkv).video.frame_count == 50  # the estimate, from the header's duration
    restored = tmp_path / "cut.restored.mkv"
    capsys.readouterr()
    assert main(["restore", str(mkv), "-o", str(restored), "--model", "identity"]) == 0
    assert "truncated" in capsys.readouterr().err  # the decode or, where it saw nothing, the estimate says so
    assert frame_times(restored) == frame_times(mkv)
    summary = tmp_path / "s.json"
    args = ["batch", str(mkv), "-o", str(tmp_path / "out"), "--model", "identity", "-q", "--summary", str(summary)]
    assert main([*args, "--segment-seconds", "0.5"]) == 0
    row = json.loads(summary.read_text())["files"][0]
    assert row["status"] == "done" and row["frames"] == len(frame_times(mkv)) < 50
    assert any("truncated" in w for w in row["warnings"]), row["warnings"]


def test_segment_plan_from_cues_and_seeks_tiles_the_file(clips):
    for ext, source in (("mkv", "cues"), ("ts", "seek"), ("mov", "index")):
        path = clips[ext]
        info = probe(path)
        index = index_packets(path, info, 0.4)
        assert index.source == source
        plan = plan_segments(index, PlanSettings(0.4, warmup_frames=4, lookahead_frames=4))
        assert len(plan) >= 2
        truth = sorted(int(p["pts"]) for p in video_packets(path))
        tb = index.time_base
        keys = {int(p["pts"]) for p in video_packets(path) if "K" in p["flags"]}
        assert plan[0].emit_start == truth[0] and plan[-1].emit_end is None
        assert all(s.emit_start in keys for s in plan[1:])  # every later segment starts on a key frame
        assert all(a.emit_end == b.emit_start for a, b in itertools.pairwise(plan))
        for seg in plan[1:]:
            assert seg.decode_from < float(seg.emit_start * tb)
            assert seg.decode_until is None or seg.decode_until > float(seg.emit_end * tb)
        assert sum(s.frames for s in plan) == pytest.approx(len(truth), abs=len(plan))


def test_batch_of_segments_reads_its_input_about_once(tmp_path, monkeypatch):
    # rawvideo (150 kB frames, much more than a read buffer), 12 s in 3 segments, with a small PCM track
    # (copied from the input once, at assembly)
    path = tmp_path / "in" / "reel.mov"
    path.parent.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=8000",
           "-t", "12", "-c:v", "rawvideo", "-pix_fmt", "uyvy422", "-c:a", "pcm_s16le", path)  # fmt: skip
    audio_share = 12 * 8000 * 2 / path.stat().st_size
    summary = tmp_path / "s.json"
    with counting_reads(monkeypatch, path) as log:
        code = main(["batch", str(path), "-o", str(tmp_path / "out"), "--model", "identity", "-q",
                     "--segment-seconds", "4", "--summary", str(summary)])  # fmt: skip
    assert code == 0
    row = json.loads(summary.read_text())["files"][0]
    assert row["segments"] == 3 and row["frames"] == 300
    settings = PlanSettings.for_faces(FacesConfig(), 4.0)  # at least 17 frames of warm-up, 9 of look-ahead
    assert (settings.warmup_frames, settings.lookahead_frames) == (17, 9)
    # each inner boundary decodes twice: the warm-up (from the faces stage's sync frame before it, less its
    # scene-cut history) and the look-ahead
    index = index_packets(path, probe(path), 4.0)
    plan = plan_segments(index, settings)
    warm = sum(round((s.emit_start * index.time_base - index.origin - s.decode_from) * 25) for s in plan[1:])
    assert 2 * 17 < warm < 2 * 125
    overlap = (warm + 2 * settings.lookahead_frames) / 300
    # beyond that: per open, a header, a read buffer and the threaded decoder's delay (a few frames); the
    # assembly reads the audio (and the buffers around it), not the video again
    assert log.ratio() <= 1 + overlap + 2 * audio_share + 0.2, (log.ratio(), log.opens, audio_share)
    assert log.opens == 2 + 3 + 1  # probe, plan, one per segment (none probes again), assembly
    assert frame_times(tmp_path / "out" / "reel.mov") == frame_times(path)
    (record,) = (tmp_path / "out" / ".gpen-video-job" / "files").glob("*.json")
    kept = json.loads(record.read_text())
    assert kept["index_source"] == "index" and kept["frames_planned"] == 300
    assert kept["media"]["video"]["frame_count"] == 300 and kept["media"]["video"]["frame_count_source"] == "index"


def test_plan_from_the_index_only_where_key_frames_open_closed_gops(tmp_path):
    """With B-frames the index holds decode times; a segment may start on a key frame only where its
    presentation time follows from them (closed GOP); open GOPs are scanned instead."""
    made = {}
    for name, params in (("closed", []), ("open", ["-x264-params", "open-gop=1:keyint=25:min-keyint=25:scenecut=0"])):
        made[name] = tmp_path / f"{name}.mov"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "4", "-c:v", "libx264", "-g", "25",
               "-bf", "3", *params, made[name])  # fmt: skip
    for name, source in (("closed", "index"), ("open", "scan")):
        path = made[name]
        index = index_packets(path, probe(path), 1.0)
        assert index.source == source
        truth = [int(p["pts"]) for p in video_packets(path) if "K" in p["flags"]]
        assert index.keyframes == sorted(truth)
        assert index.pts == sorted(int(p["pts"]) for p in video_packets(path))


def test_ts_segment_decodes_from_the_gop_its_warmup_falls_in(tmp_path):
    """Without an index, segments start on key frames found by seeking, and a segment's decode starts on the key
    frame at or before its warm-up (not a GOP or a second earlier): warm-up, the GOP it falls in, the look-ahead.
    The TS starts at 1.4 s (its first pts): decode windows count from there, as the reader does."""
    from gpen_video.io.reader import VideoReader

    path = tmp_path / "reel.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "10", "-c:v", "libx264", "-g", "50",
           "-bf", "2", path)  # fmt: skip
    info = probe(path)
    index = index_packets(path, info, 4.0)
    assert index.source == "seek" and info.video.start_time > 1
    settings = PlanSettings.for_faces(FacesConfig(sync_seconds=0.0), 4.0)  # the fixed warm-up (test_io_byte_start:
    plan = plan_segments(index, settings)  # with sync frames, a TS segment decodes from its own key frame)
    packets = video_packets(path)
    truth = sorted(int(p["pts"]) for p in packets)
    keys = sorted(int(p["pts"]) for p in packets if "K" in p["flags"])
    assert [s.emit_start for s in plan] == [truth[0], keys[2], keys[4]]  # every 4 s: on the key frames there
    for seg in plan[1:]:
        window = seg.window
        duration = None if window.decode_until is None else window.decode_until - window.decode_from
        with VideoReader(path, info, None, window.decode_from, duration) as reader:
            reader.side_streams = []  # as a segment's run has them
            emitted = [f.pts for f in reader.frames() if window.emits(f.pts)]
        assert emitted == [p for p in truth if seg.emit_start <= p < (seg.emit_end or truth[-1] + 1)]
        first = truth.index(seg.emit_start)
        gop_start = max(k for k in keys if k <= truth[first - settings.warmup_frames])  # the warm-up's GOP
        last = len(truth) if seg.emit_end is None else truth.index(seg.emit_end) + settings.lookahead_frames
        needed = len(truth[truth.index(gop_start) : last])
        # + 2: the plan's frame of rounding (its frame counts are from the rate) and the frame that ends the window
        assert needed <= reader.stats.decoded <= needed + 2, (reader.stats.decoded, needed)


def _ffprobe_packets(path: Path) -> dict[int, int]:
    import subprocess

    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries", "stream=index,nb_read_packets",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout  # fmt: skip
    return {s["index"]: int(s["nb_read_packets"]) for s in json.loads(out)["streams"] if "nb_read_packets" in s}


@pytest.mark.parametrize(("ext", "audio"), [("mxf", "pcm_s16le"), ("mxf", "pcm_s24le"), ("ts", "mp2")])
def test_probe_counts_audio_packets_where_there_is_no_index(ext, audio, tmp_path):
    """MXF hands PCM out one video edit unit a packet (3 s at 25 fps: 75, where probe said 0); MP2 one frame a
    packet. Without an index the count is an estimate, marked so, and matches ffprobe's -count_packets here."""
    path = tmp_path / f"pcm.{ext}"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=48000",
           "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000", "-map", "0", "-map", "1", "-map", "2",
           "-t", "3", "-c:v", "mpeg2video", "-c:a", audio, path)  # fmt: skip
    info = probe(path)
    counted = _ffprobe_packets(path)
    assert [s.packets for s in info.audio] == [counted[s.index] for s in info.audio]
    assert all(s.packet_count_source == "estimate" for s in info.audio)
    if ext == "mxf":
        assert [s.packets for s in info.audio] == [75, 75]
