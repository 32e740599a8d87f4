"""A batch segment keeps its own share of the input's side-stream packets, so assembly need not read the input again.

In a TS the audio is interleaved with the video 188 bytes at a time: reading it alone at assembly is reading the
whole file a second time. The segments' readers demux it anyway; each keeps the packets whose time falls in its
own span, into a side file next to its segment file. The truth about the packets is ffprobe's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
from conformance_cases import ffmpeg
from read_counting import FFPROBE, counting_reads

from gpen_video.config import FacesConfig, load_config
from gpen_video.io.probe import probe
from gpen_video.io.reader import VideoReader
from gpen_video.jobs.assemble import assemble
from gpen_video.jobs.planner import PlanSettings, index_packets, plan_segments
from gpen_video.jobs.runner import _segment_config
from gpen_video.jobs.tasks import RestorerCache, SegmentTask, execute_segment
from gpen_video.side_packets import read_side_file, side_file_for


def _side_packets(path: Path) -> list[tuple[str, str, str, str, str]]:
    """ffprobe's audio packets: pts and duration (seconds), size, key flag, payload hash, in file order."""
    out = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "a", "-show_data_hash", "sha256",
                          "-show_entries", "packet=pts_time,duration_time,size,flags,data_hash", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [(p["pts_time"], p["duration_time"], p["size"], p["flags"][0], p["data_hash"])
            for p in json.loads(out)["packets"]]  # fmt: skip


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
        assert execute_segment(task, restorers).error is None
        # what the segment's run does once pipeline.run_restore diverts its side packets (see the report)
        window = seg.window
        duration = None if window.decode_until is None else window.decode_until - window.decode_from
        with VideoReader(path, info, None, window.decode_from, duration) as reader:
            reader.divert_side_packets(side_file_for(segment_file), seg.emit_start, seg.emit_end)
            for _ in reader.frames():
                pass
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
