"""Long-GOP inputs: a batch segment decodes from its own key frame and emits from the warm-up's end (issue 13).

The truth is ffprobe's packet list (pts and key-frame flags), not the planner's own index: each segment's frames
tile the input exactly, and each decodes the warm-up + its frames + the look-ahead, not the GOP before as well.
The cuts here are the fixed warm-up's (``faces.sync_seconds: 0``): with sync frames (the default) a segment emits
from the first settled sync frame after its key frame instead (``test_io_byte_start``'s
``test_sync_frames_move_the_cut_and_keep_the_byte_start``, and ``test_preview_production`` end to end), which
these short clips' 2-second segments would not reach.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from conformance_cases import ffmpeg
from read_counting import video_packets

from gpen_video.cli import main
from gpen_video.config import FacesConfig
from gpen_video.io.probe import probe
from gpen_video.io.reader import VideoReader
from gpen_video.jobs.packet_index import index_packets
from gpen_video.jobs.planner import PlanSettings, plan_segments

NO_SYNC = FacesConfig(sync_seconds=0.0)
FIXED_WARMUP = ("--set", "faces.sync_seconds=0")  # the same, for a batch run


def _settings(seconds: float) -> PlanSettings:
    return replace(PlanSettings.for_faces(NO_SYNC, seconds), emit_after_key=True)  # as the batch runner plans


def _truth(path: Path) -> tuple[list[int], list[int]]:
    packets = video_packets(path)
    return sorted(int(p["pts"]) for p in packets), sorted(int(p["pts"]) for p in packets if "K" in p["flags"])


def _decode(path: Path, window) -> tuple[list[int], int]:  # type: ignore[no-untyped-def]
    info = probe(path)
    duration = None if window.decode_until is None else window.decode_until - window.decode_from
    with VideoReader(path, info, None, window.decode_from, duration) as reader:
        reader.side_streams = []  # as a segment's run has them (its side packets go to a side file)
        emitted = [f.pts for f in reader.frames() if window.emits(f.pts)]
    return emitted, reader.stats.decoded


def test_ts_segments_decode_from_their_key_frame_and_tile_the_frames(tmp_path):
    path = tmp_path / "reel.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "12", "-c:v", "libx264", "-g", "50",
           "-bf", "2", path)  # fmt: skip
    info = probe(path)
    index = index_packets(path, info, 4.0)
    assert index.source == "seek"
    settings = _settings(4.0)
    plan = plan_segments(index, settings)
    truth, keys = _truth(path)
    warm, ahead = settings.warmup_frames, settings.lookahead_frames
    assert len(plan) == 3 and plan[0].emit_start == truth[0] and plan[-1].emit_end is None
    emitted_all: list[int] = []
    for seg, nxt in itertools.zip_longest(plan, plan[1:]):
        emitted, decoded = _decode(path, seg.window)
        emitted_all += emitted
        first = truth.index(emitted[0])
        if seg.index > 0:
            key = keys[2 * seg.index]  # every 4 s: the key frame there (one every 2 s)
            assert truth[first - warm] == key  # emits from the frame `warm` after its key frame, not on it
            start = truth.index(key)  # and decodes from that key frame: the warm-up is in its own GOP
        else:
            start = 0
        stop = len(truth) if nxt is None else truth.index(_first_emitted(truth, nxt)) + ahead
        needed = len(truth[start:stop])
        # + 2: the plan's frame counts are from the rate (a frame of rounding) and the frame that ends the window
        assert needed <= decoded <= needed + 2, (seg.index, decoded, needed)
        if seg.index > 0:  # the key-frame cut decoded the GOP before the key frame too: 50 frames more
            assert decoded < 50 + len(emitted)
    assert emitted_all == truth  # every frame once, in order: none dropped or doubled at the seams


def _first_emitted(truth: list[int], seg) -> int:  # type: ignore[no-untyped-def]
    return next(p for p in truth if seg.window.emits(p))


def test_indexed_long_gop_emits_after_the_warmup_and_all_intra_stays_on_key_frames(tmp_path):
    long_gop, intra = tmp_path / "long.mov", tmp_path / "intra.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "8", "-c:v", "libx264", "-g", "50",
           "-bf", "2", long_gop)  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "8", "-c:v", "mjpeg", intra)
    settings = _settings(2.0)
    plan = plan_segments(index_packets(long_gop, probe(long_gop), 2.0), settings)
    truth, keys = _truth(long_gop)
    assert [s.emit_start for s in plan[1:]] == [truth[truth.index(k) + settings.warmup_frames] for k in keys[1:]]
    assert all(a.emit_end == b.emit_start for a, b in itertools.pairwise(plan))
    video = probe(long_gop).video
    for seg, key in zip(plan[1:], keys[1:], strict=True):
        assert abs(video.start_time + seg.decode_from - float(key * video.time_base)) < 1e-4  # from the key frame
        emitted, decoded = _decode(long_gop, seg.window)
        assert emitted[0] == seg.emit_start and decoded <= settings.warmup_frames + len(emitted) + 9 + 2
    intra_index = index_packets(intra, probe(intra), 2.0)
    intra_truth, intra_keys = _truth(intra)
    assert intra_keys == intra_truth  # every frame a key frame
    shifted = plan_segments(intra_index, settings)
    assert shifted == plan_segments(intra_index, replace(settings, emit_after_key=False))
    assert len(shifted) > 1 and all(s.emit_start in intra_keys for s in shifted)


@pytest.mark.slow
def test_first_segment_is_the_unsegmented_run_bit_for_bit_up_to_a_seam_after_the_warmup(tmp_path):
    """A long GOP (50 frames at 25 fps, two warm-ups and more): segment 1 decodes from the key frame at 50 and emits
    from frame 50 + 17; segment 0 emits up to there and decodes the look-ahead past it, so its frames are those of
    one restore of the whole file, bit for bit (lossless FFV1), faces restored on every one; every frame keeps the
    source's timestamp (assembly takes a segment's first frame to be at its emit_start)."""
    import numpy as np
    from jobs_helpers import FACES, longer, write
    from media_checks import frame_times, video_planes

    keyint = {"g": "50", "keyint_min": "50", "sc_threshold": "0"}
    spec = replace(longer(FACES, 100), rate=Fraction(25), codec_options=keyint)
    clip = write(tmp_path, "faces.mkv", spec)
    lossless = ("--video-codec", "ffv1", "--model", "identity", "-q", *FIXED_WARMUP)
    assert main(["restore", str(clip), "-o", str(tmp_path / "whole.mkv"), *lossless]) == 0
    assert main(["batch", str(clip), "-o", str(tmp_path / "seg"), "--segment-seconds", "2", *lossless]) == 0
    whole, segmented, source = (video_planes(p) for p in (tmp_path / "whole.mkv", tmp_path / "seg" / clip.name, clip))
    assert len(whole) == len(segmented) == len(source) == 100
    assert frame_times(tmp_path / "seg" / clip.name) == frame_times(clip)
    truth, keys = _truth(clip)
    assert keys[:2] == [truth[0], truth[50]]
    seam = 50 + _settings(2.0).warmup_frames
    (record,) = (tmp_path / "seg" / ".gpen-video-job" / "files").glob("*.json")
    planned = json.loads(record.read_text())["segments"]
    assert len(planned) == 2 and planned["1"]["emit_start"] == truth[seam]  # the seam: 50 + 17

    def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    assert all(not same(w, s) for w, s in zip(whole[:seam], source[:seam], strict=True))  # faces restored
    assert all(same(w, s) for w, s in zip(whole[:seam], segmented[:seam], strict=True))


def test_batch_of_a_long_gop_ts_keeps_every_timestamp(tmp_path):
    from media_checks import frame_times

    path = tmp_path / "reel.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "8",
           "-c:v", "libx264", "-g", "50", "-bf", "2", "-c:a", "aac", path)  # fmt: skip
    out = tmp_path / "out"
    assert (
        main(["batch", str(path), "-o", str(out), "--model", "identity", "-q", "--segment-seconds", "2", *FIXED_WARMUP])
        == 0
    )
    (record,) = (out / ".gpen-video-job" / "files").glob("*.json")
    starts = [s["emit_start"] for s in json.loads(record.read_text())["segments"].values()]
    truth, keys = _truth(path)
    assert starts[1:] == [truth[truth.index(k) + 17] for k in keys[1:4]]  # 17 frames after the key frames
    assert frame_times(out / "reel.ts") == frame_times(path)


def test_a_frame_missing_where_a_segment_starts_keeps_every_frame_at_its_time(tmp_path):
    """A capture that dropped the frame a segment was planned to start on (the warm-up's end after a key frame):
    the segment begins at the next frame, and assembly places it by that frame, not by the planned start (which
    shifted every frame of the segment one frame early, silently). ffprobe's pts of input and output agree."""
    path = tmp_path / "in" / "dropped.ts"
    path.parent.mkdir()
    # key frames every 50 frames; frame 67 (= 50 + the 17-frame warm-up: segment 1's planned start) is missing
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t",
           "10", "-vf", r"select=not(eq(n\,67))", "-fps_mode", "passthrough", "-c:v", "libx264", "-preset",
           "ultrafast", "-g", "50", "-bf", "2", "-c:a", "aac", path)  # fmt: skip
    info = probe(path)
    plan = plan_segments(index_packets(path, info, 2.0), _settings(2.0))
    truth, _ = _truth(path)
    missing = plan[1].emit_start
    assert missing not in truth and missing + 3600 in truth  # the plan's start for segment 1 is the dropped frame
    out = tmp_path / "out"
    assert (
        main(["batch", str(path), "-o", str(out), "--model", "identity", "-q", "--segment-seconds", "2", *FIXED_WARMUP])
        == 0
    )
    assert _truth(out / "dropped.ts")[0] == truth
