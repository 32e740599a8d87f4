"""A batch segment keeps its own share of the input's side-stream packets, so assembly need not read the input again.

In a TS the audio is interleaved with the video 188 bytes at a time: reading it alone at assembly is reading the
whole file a second time. The segments' readers demux it anyway; each keeps the packets whose time falls in its
own span, into a side file next to its segment file. The truth about the packets is ffprobe's.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from conformance_cases import ffmpeg, ffprobe_json
from read_counting import counting_reads

from gpen_video.cli import main
from gpen_video.config import FacesConfig, load_config
from gpen_video.io.probe import probe
from gpen_video.io.reader import VideoReader
from gpen_video.io.side_packets import SideFileWriter, read_side_file, side_file_for
from gpen_video.jobs.assemble import assemble
from gpen_video.jobs.packet_index import index_packets
from gpen_video.jobs.planner import PlanSettings, plan_segments
from gpen_video.jobs.runner import _segment_config
from gpen_video.jobs.tasks import RestorerCache, SegmentTask, execute_segment


def _side_packets(path: Path) -> list[tuple[str, str, str, str, str]]:
    """ffprobe's audio packets: pts and duration (seconds), size, key flag, payload hash, in file order."""
    entries = "packet=pts_time,duration_time,size,flags,data_hash"
    probed = ffprobe_json(path, "-select_streams", "a", "-show_data_hash", "sha256", "-show_entries", entries)
    return [(p["pts_time"], p["duration_time"], p["size"], p["flags"][0], p["data_hash"]) for p in probed["packets"]]


def test_segments_side_files_tile_the_input_and_assembly_reads_them_instead(tmp_path, monkeypatch):
    path = tmp_path / "reel.ts"  # 8 s, a key frame every 2 s, AAC interleaved; it starts at 1.4 s
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t",
           "8", "-c:v", "libx264", "-g", "50", "-bf", "2", "-c:a", "aac", path)  # fmt: skip
    info = probe(path)
    index = index_packets(path, info, 2.0)
    plan = plan_segments(index, PlanSettings.for_faces(FacesConfig(), 2.0))
    assert len(plan) == 4
    config = _segment_config(load_config(None, {"restore.model": "identity", "output.preset": "ultrafast"}))
    output = tmp_path / "out.ts"
    restorers = RestorerCache()
    files, sides = [], []
    for seg in plan:
        segment_file = tmp_path / f"seg-{seg.index:05d}.nut"
        task = SegmentTask("k", seg.index, path, segment_file, config, seg.window, seg.frames, info, output)
        done = execute_segment(task, restorers)  # its run keeps its own side packets (pipeline.run_restore)
        assert done.error is None and done.side_file == side_file_for(segment_file).name and done.side_size > 0
        files.append(segment_file)
        sides.append(side_file_for(segment_file))
    restorers.close()
    with av.open(str(path)) as source:
        streams = {s.index: s for s in source.streams}
        kept = [(float(p.pts * p.time_base), p.size, bytes(p)) for side in sides for p in read_side_file(side, streams)]
    truth = _side_packets(path)
    assert len(kept) == len(truth) > 300  # every packet once: none dropped or doubled at the seams
    assert [f"{t:.6f}" for t, _, _ in kept] == [p[0] for p in truth]
    assert [str(size) for _, size, _ in kept] == [p[2] for p in truth]

    with counting_reads(monkeypatch, path) as log:
        assemble(info, files, [s.emit_start for s in plan], output, index.durations, index.pts, sides)
    assert log.opens == 1 and log.bytes_read <= 64 << 10, log.reads  # the stream headers only, not the packets
    assert _side_packets(output) == truth  # pts, durations, sizes, flags and payloads: the input's audio exactly

    # a segment whose read began after its span's first audio packet (muxed early) lacks it: assembly sees the
    # gap at the seam and copies the audio from the input instead of writing it with a hole
    with av.open(str(path)) as source:
        streams = {s.index: s for s in source.streams}
        packets = list(read_side_file(sides[2], streams))
        short = SideFileWriter(sides[2])
        for packet in packets[1:]:
            short.write(packet)
        short.commit()
    output.unlink()
    with counting_reads(monkeypatch, path) as log:
        assemble(info, files, [s.emit_start for s in plan], output, index.durations, index.pts, sides)
    assert log.bytes_read > path.stat().st_size // 2  # the input's audio, read again
    assert _side_packets(output) == truth


def _batch_reads(monkeypatch, path: Path, out: Path) -> float:
    with counting_reads(monkeypatch, path) as log:
        code = main(["batch", str(path), "-o", str(out), "--model", "identity", "-q", "--segment-seconds", "2"])
    assert code == 0
    return log.ratio()


@pytest.mark.slow
def test_batch_of_a_ts_keeps_its_audio_exactly_without_reading_the_file_again(tmp_path, monkeypatch):
    """End to end: a ``batch`` of a TS takes its audio from the segments' side files: the output's audio is
    the input's packet for packet, and the job reads about one file less than when assembly reads the input."""
    path = tmp_path / "in" / "reel.ts"
    path.parent.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "8",
           "-vf", "noise=alls=30:allf=t", "-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac", path)  # fmt: skip
    ratio = _batch_reads(monkeypatch, path, tmp_path / "out")
    (record,) = (tmp_path / "out" / ".gpen-video-job" / "files").glob("*.json")
    segments = list(json.loads(record.read_text())["segments"].values())
    assert len(segments) >= 3 and all(s["side_file"] == s["file"] + ".side" and s["side_size"] > 0 for s in segments)
    assert _side_packets(tmp_path / "out" / "reel.ts") == _side_packets(path)

    with monkeypatch.context() as patch:  # segments that keep no side packets: assembly reads the input for them
        patch.setattr(VideoReader, "divert_side_packets", lambda reader, *_: setattr(reader, "side_streams", []))
        without = _batch_reads(monkeypatch, path, tmp_path / "out-without")
    assert _side_packets(tmp_path / "out-without" / "reel.ts") == _side_packets(path)
    assert ratio <= without - 0.85, (ratio, without)
