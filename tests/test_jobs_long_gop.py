"""Long-GOP inputs: a batch segment decodes from its own key frame and emits from the warm-up's end (issue 13).

The truth is ffprobe's packet list (pts and key-frame flags), not the planner's own index: each segment's frames
tile the input exactly, and each decodes the warm-up + its frames + the look-ahead, not the GOP before as well.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from conformance_cases import ffmpeg
from read_counting import video_packets

from gpen_video.config import FacesConfig
from gpen_video.io.probe import probe
from gpen_video.io.reader import VideoReader
from gpen_video.jobs.planner import PlanSettings, index_packets, plan_segments


def _settings(seconds: float) -> PlanSettings:
    return replace(PlanSettings.for_faces(FacesConfig(), seconds), emit_after_key=True)  # as the batch runner plans


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
