"""A TS or PS batch segment opens the file at its key frame's byte position instead of seeking (issue 13).

A timestamp seek in a file without an index bisects it (FFmpeg reads its last 250 kB for the end's timestamp),
and every open's stream analysis reads the file's first 250 kB: on ten segments, both ten times. The plan's seeks
find each segment's key frame anyway, and with it the position its packet starts at; the segment's reader opens
the file there. The truth about where each key frame lies is ffprobe's packet list, and a segment opened at its
key frame must decode, emit and keep exactly what the same segment decoded after a seek does.
The cuts here are the fixed warm-up's (``faces.sync_seconds: 0``): with sync frames (the default) a segment emits
from the first settled sync frame after its key frame instead (``test_sync_frames_move_the_cut_and_keep_the_byte_start``
below, and ``test_preview_production`` end to end), which these short clips' 2-second segments would not reach.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace
from pathlib import Path

import av
import pytest
from conformance_cases import ffmpeg, ffprobe_json
from read_counting import counting_reads, video_packets

from gpen_video.cli import main
from gpen_video.config import FacesConfig
from gpen_video.io.light_open import BYTE_START_LEAD, open_at_byte
from gpen_video.io.probe import probe
from gpen_video.io.reader import VideoReader
from gpen_video.io.side_packets import read_side_file
from gpen_video.jobs.packet_index import index_packets
from gpen_video.jobs.planner import PlanSettings, plan_segments
from gpen_video.run.job import SegmentWindow

NO_SYNC = FacesConfig(sync_seconds=0.0)
FIXED_WARMUP = ("--set", "faces.sync_seconds=0")  # the same, for a batch run


def _settings(seconds: float) -> PlanSettings:
    return replace(PlanSettings.for_faces(NO_SYNC, seconds), emit_after_key=True)  # as the batch runner plans


@pytest.fixture(scope="module")
def reel(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("byte-start") / "reel.ts"  # 12 s, a key frame every 2 s, AAC interleaved
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", "12", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-bf", "2", "-c:a", "aac",
           path)  # fmt: skip
    return path


def _keys(path: Path) -> dict[int, int]:
    """ffprobe's key frames: pts -> the position of its packet."""
    return {int(p["pts"]): int(p["pos"]) for p in video_packets(path) if "K" in p["flags"]}


def _spans(reads: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of the file read, merged: (start, end) in file order."""
    spans: list[tuple[int, int]] = []
    for offset, n in sorted(reads):
        if spans and offset <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], offset + n))
        else:
            spans.append((offset, offset + n))
    return spans


def _run(path: Path, window: SegmentWindow, side: Path, monkeypatch):  # type: ignore[no-untyped-def]
    """A segment's read: the frames it emits (pts, picture hash), every frame decoded, its side file, its reads."""
    info = probe(path)
    duration = None if window.decode_until is None else window.decode_until - window.decode_from
    with counting_reads(monkeypatch, path) as log:
        reader = VideoReader(path, info, None, window.decode_from, duration, window.decode_from_byte)
        with reader:
            reader.divert_side_packets(side, window.emit_start, window.emit_end)
            emitted = [
                (f.pts, hashlib.sha256(f.source.to_ndarray().tobytes()).hexdigest())
                for f in reader.frames()
                if window.emits(f.pts)
            ]
    return emitted, reader.stats.decoded, side.read_bytes(), log


def test_plan_finds_each_key_frame_where_ffprobe_puts_it(reel):
    info = probe(reel)
    index = index_packets(reel, info, 4.0)
    truth = _keys(reel)
    assert index.source == "seek" and len(index.key_positions) >= 3
    assert all(truth.get(pts) == pos for pts, pos in index.key_positions.items()), (index.key_positions, truth)
    plan = plan_segments(index, _settings(4.0))
    assert len(plan) == 3 and plan[0].decode_from_byte is None  # the first decodes from the file's start
    for seg in plan[1:]:
        key = round((info.video.start_time + seg.decode_from) * 90000)  # the key frame its warm-up starts on
        assert seg.decode_from_byte == truth[key] > 0


def test_sync_frames_move_the_cut_and_keep_the_byte_start(reel):
    """With sync frames (the default) a segment still opens at its own key frame's byte and decodes from there; it
    emits from the first frame whose faces depend on no frame before that key frame (``WarmStart.before``)."""
    info = probe(reel)
    settings = replace(PlanSettings.for_faces(FacesConfig(), 4.0), emit_after_key=True)
    assert settings.warm.sync_seconds == 4.0
    plan = plan_segments(index_packets(reel, info, 4.0), settings)
    keys, pts = _keys(reel), sorted(int(p["pts"]) for p in video_packets(reel))
    frame = 1 / 25
    assert len(plan) == 3 and all(a.emit_end == b.emit_start for a, b in itertools.pairwise(plan))
    for seg in plan[1:]:
        key = round((info.video.start_time + seg.decode_from) * 90000)
        assert seg.decode_from_byte == keys[key] > 0
        first = pts.index(seg.emit_start)  # a frame of the file
        start, before = pts[first] / 90000, pts[first - 1] / 90000
        assert settings.warm.before(start, frame * 1.01) >= key / 90000  # decoding from the key frame is enough
        assert settings.warm.before(before, frame * 1.01) < key / 90000  # and for the frame before, it is not


def test_a_segment_opened_at_its_key_frame_reads_from_there_and_decodes_as_after_a_seek(reel, tmp_path, monkeypatch):
    info = probe(reel)
    plan = plan_segments(index_packets(reel, info, 4.0), _settings(4.0))
    size = reel.stat().st_size
    emitted_all = []
    for seg in plan[1:]:
        window = seg.window
        opened = _run(reel, window, tmp_path / f"at-{seg.index}.side", monkeypatch)
        sought = _run(reel, replace(window, decode_from_byte=None), tmp_path / f"seek-{seg.index}.side", monkeypatch)
        assert opened[:3] == sought[:3]  # the same frames, pictures, decode count and side packets
        emitted_all += [pts for pts, _ in opened[0]]
        log = opened[3]
        # one run of the file, from just before its key frame on: nothing earlier, no jump to the file's end
        assert _spans(log.reads) == [(window.decode_from_byte - BYTE_START_LEAD, _spans(log.reads)[0][1])]
        # the seek's open analyses the file's start, and its bisection reads the file's end
        sought_spans = _spans(sought[3].reads)
        assert sought_spans[0][0] == 0 and sought_spans[-1][1] == size
        assert len(sought_spans) >= (3 if seg.emit_end is not None else 2)  # the last segment reads to the end
        assert log.distinct_bytes < sought[3].distinct_bytes
    with av.open(str(reel)) as source:  # and the side file holds audio packets (it is not empty on both paths)
        streams = {s.index: s for s in source.streams}
        assert len(list(read_side_file(tmp_path / "at-1.side", streams))) > 100
    first = plan[1].emit_start
    assert emitted_all == sorted(int(p["pts"]) for p in video_packets(reel) if int(p["pts"]) >= first)


def test_a_byte_position_that_is_not_the_key_frame_falls_back_to_the_seek(reel, tmp_path, monkeypatch):
    info = probe(reel)
    plan = plan_segments(index_packets(reel, info, 4.0), _settings(4.0))
    window = plan[1].window
    packets = video_packets(reel)
    far = window.decode_from_byte + 2 * BYTE_START_LEAD  # its open starts past the key frame
    inside = next(int(p["pos"]) for p in packets if "K" not in p["flags"] and int(p["pos"]) > far)
    wrong = _run(reel, replace(window, decode_from_byte=inside), tmp_path / "wrong.side", monkeypatch)
    sought = _run(reel, replace(window, decode_from_byte=None), tmp_path / "seek.side", monkeypatch)
    assert wrong[:3] == sought[:3] and len(wrong[0]) == plan[1].frames
    assert wrong[3].opens == 2  # opened at the byte, found no key frame there, then opened to seek
    past_end = replace(window, decode_from_byte=reel.stat().st_size + 10**6)  # nothing there at all
    assert _run(reel, past_end, tmp_path / "past.side", monkeypatch)[:3] == sought[:3]


@pytest.mark.parametrize(
    "name, codec",
    [
        ("broadcast.ts", ["-c:v", "mpeg2video", "-g", "12", "-bf", "2", "-c:a", "mp2"]),
        ("dvd.mpg", ["-c:v", "mpeg2video", "-g", "15", "-bf", "2", "-c:a", "mp2", "-f", "vob"]),
    ],
)
def test_short_gop_segments_open_at_their_own_key_frame_and_tile_the_frames(name, codec, tmp_path, monkeypatch):
    """MPEG-2 at 12-15 frames a GOP (broadcast TS, DVD PS): a warm-up before a key frame would seek by timestamp to
    a key frame the plan does not know; each segment instead decodes from its own and emits after the warm-up."""
    path = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", "8", "-b:v", "2M", *codec, path)  # fmt: skip
    info = probe(path)
    settings = _settings(2.0)
    plan = plan_segments(index_packets(path, info, 2.0), settings)
    truth = sorted(int(p["pts"]) for p in video_packets(path))
    keys = _keys(path)
    assert len(plan) == 4
    emitted_all: list[int] = []
    for seg, nxt in itertools.zip_longest(plan, plan[1:]):
        emitted, decoded, _, log = _run(path, seg.window, tmp_path / f"{seg.index}.side", monkeypatch)
        emitted_all += [pts for pts, _ in emitted]
        if seg.index == 0:
            continue
        key = round((info.video.start_time + seg.decode_from) * 90000)  # the key frame it decodes from
        assert key in keys and truth.index(seg.emit_start) - truth.index(key) == settings.warmup_frames
        assert seg.decode_from_byte == keys[key] and log.opens == 1
        assert _spans(log.reads) == [(keys[key] - BYTE_START_LEAD, _spans(log.reads)[0][1])]  # one run, from there
        stop = len(truth) if nxt is None else truth.index(nxt.emit_start) + settings.lookahead_frames
        needed = min(stop, len(truth)) - truth.index(key)
        assert needed <= decoded <= needed + 2, (seg.index, decoded, needed)  # + rounding of the rate's counts
    assert emitted_all == truth  # every frame once, in order


def test_segments_shorter_than_the_gop_cut_on_every_key_frame(tmp_path):
    """2-second segments over 3-second GOPs: a seek lands in the GOP before the one it aims at, whose key frame is
    already a boundary; it reads on to the next key frame, which is the next boundary (none is skipped)."""
    path = tmp_path / "long-gop.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "12", "-c:v", "libx264", "-g", "75",
           "-bf", "2", path)  # fmt: skip
    index = index_packets(path, probe(path), 2.0)
    truth = _keys(path)
    assert index.keyframes == sorted(truth) and len(truth) == 4
    assert index.key_positions == truth


def _audio_packets(path: Path) -> list[tuple[int, str, str, str]]:
    """ffprobe's audio packets of every audio stream: which audio track (0, 1, ... in stream order), pts (s), size,
    payload hash."""
    out = ffprobe_json(path, "-select_streams", "a", "-show_data_hash", "sha256",
                       "-show_entries", "packet=stream_index,pts_time,size,data_hash")  # fmt: skip
    track = {index: n for n, index in enumerate(sorted({p["stream_index"] for p in out["packets"]}))}
    return sorted((track[p["stream_index"]], p["pts_time"], p["size"], p["data_hash"]) for p in out["packets"])


@pytest.mark.parametrize(
    "video",
    [
        ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=12:min-keyint=12:bframes=2:log-level=0"],
        ["-c:v", "mpeg2video", "-g", "12", "-bf", "2", "-b:v", "2M"],
    ],
    ids=["hevc", "mpeg2"],
)
def test_batch_of_a_two_audio_ts_opens_each_segment_at_its_key_frame_and_keeps_everything(video, tmp_path,
                                                                                          monkeypatch):  # fmt: skip
    """End to end (``gpen-video batch``): a broadcast-like TS, two audio tracks (AAC and AC-3), short GOPs. Every
    segment opens at its key frame, once; the output holds the input's frames at their times and both audio tracks
    packet for packet (ffprobe's view of both files), from the segments' side files."""
    path = tmp_path / "in" / "broadcast.ts"
    path.parent.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
           "-f", "lavfi", "-i", "sine=frequency=660", "-t", "8", "-map", "0:v", "-map", "1:a", "-map", "2:a", *video,
           "-c:a:0", "aac", "-c:a:1", "ac3", path)  # fmt: skip
    readers: list[VideoReader] = []
    real_init = VideoReader.__init__

    def recording_init(reader, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_init(reader, *args, **kwargs)
        readers.append(reader)

    monkeypatch.setattr(VideoReader, "__init__", recording_init)
    out = tmp_path / "out"
    code = main(
        ["batch", str(path), "-o", str(out), "--model", "identity", "-q", "--segment-seconds", "2", *FIXED_WARMUP]
    )
    assert code == 0
    opened_at = [r.opened_at_byte for r in readers]  # after the run: None where it fell back to a seek
    result = out / "broadcast.ts"
    assert len(opened_at) == 4 and opened_at[0] is None and all(opened_at[1:]), opened_at
    keys = set(_keys(path).values())
    assert set(opened_at[1:]) <= keys  # each at a key frame ffprobe lists
    frames_in = sorted(int(p["pts"]) for p in video_packets(path))
    frames_out = sorted(int(p["pts"]) for p in video_packets(result))
    assert frames_out == frames_in
    assert _audio_packets(result) == _audio_packets(path) and len(_audio_packets(path)) > 500


# Files that an open in mid-file numbers otherwise: a PS numbers its streams in the order it meets them (opened in
# mid-file, often audio first); a TS the streams of a program whose table it has not read yet, in packet order.
RENUMBERED = [
    ("two-audio.mpg", ["-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "mpeg2video", "-g", "15", "-bf", "2",
                       "-b:v", "2M", "-c:a", "mp2", "-f", "vob"]),
    ("two-programs.ts", ["-map", "0:v", "-map", "1:a", "-map", "0:v", "-map", "2:a", "-c:v", "libx264",
                         "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-program", "title=A:st=0:st=1",
                         "-program", "title=B:st=2:st=3"]),
    ("program-b-audio.ts", ["-map", "0:v", "-map", "1:a", "-map", "1:a", "-map", "2:a", "-c:v", "libx264",
                            "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-program", "title=A:st=0:st=1",
                            "-program", "title=B:st=2:st=3"]),
]  # fmt: skip


@pytest.mark.parametrize("name, layout", RENUMBERED)
def test_streams_numbered_otherwise_in_mid_file_fall_back_and_keep_each_track(name, layout, tmp_path):
    """Where the file opened at a key frame gives a stream another stream's index, the reader opens it from the
    start and seeks: each output audio track is the input's same track, packet for packet (none swapped)."""
    path = tmp_path / "in" / name
    path.parent.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
           "-f", "lavfi", "-i", "sine=frequency=660", "-t", "10", *layout, path)  # fmt: skip
    out = tmp_path / "out"
    assert (
        main(["batch", str(path), "-o", str(out), "--model", "identity", "-q", "--segment-seconds", "2", *FIXED_WARMUP])
        == 0
    )
    (result,) = [p for p in out.iterdir() if p.is_file() and p.suffix != ".json"]
    tracks_in = _audio_packets(path)
    assert len({stream for stream, *_ in tracks_in}) >= 2 and len(tracks_in) > 600
    # track, size and payload of every packet in order (the .mpg's output is Matroska: its times are in ms)
    assert [(t, size, h) for t, _, size, h in _audio_packets(result)] == [(t, size, h) for t, _, size, h in tracks_in]


@pytest.mark.parametrize("name, layout", RENUMBERED)
def test_an_open_at_any_key_frame_has_the_probes_streams_or_is_refused(name, layout, tmp_path):
    """At every key frame ffprobe lists: the file opened there holds, at each index, the stream the probe found
    there (its container id: PS stream id, TS PID), or the open is refused (the reader then seeks)."""
    path = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
           "-f", "lavfi", "-i", "sine=frequency=660", "-t", "8", *layout, path)  # fmt: skip
    info = probe(path)
    want = {info.video.index: info.video.stream_id, **{s.index: s.stream_id for s in info.streams}}
    truth = {int(s["index"]): int(s["id"], 16) for s in ffprobe_json(path, "-show_streams")["streams"]}
    assert want == truth  # the probe's ids are ffprobe's
    refused = 0
    for position in sorted(_keys(path).values())[1:]:
        container = open_at_byte(path, info, position)
        if container is None:
            refused += 1
            continue
        with container:
            assert {s.index: s.id for s in container.streams} == want, position
    assert refused < len(_keys(path)) - 1  # some opens are taken (not all refused)


def test_a_fallback_open_keeps_only_the_streams_assembly_muxes(tmp_path, monkeypatch):
    """A segment whose byte start misses reopens the file: its side file still holds audio only (a second program's
    video is not assembled, and a side packet of it would make the segment unusable)."""
    path = tmp_path / "two-programs.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "8",
           "-map", "0:v", "-map", "1:a", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-g",
           "50", "-c:a", "aac", "-program", "title=A:st=0:st=1", "-program", "title=B:st=2:st=3", path)  # fmt: skip
    info = probe(path)
    plan = plan_segments(index_packets(path, info, 4.0), _settings(4.0))
    far = plan[1].decode_from_byte + 2 * BYTE_START_LEAD
    for packet in video_packets(path):  # a non-key frame the file opens at, with the probe's streams
        position = int(packet["pos"])
        if "K" not in packet["flags"] and position > far and (container := open_at_byte(path, info, position)):
            container.close()
            break
    window = replace(plan[1].window, decode_from_byte=position)
    emitted, _, _, log = _run(path, window, tmp_path / "fallback.side", monkeypatch)
    assert emitted and log.opens == 2  # opened there, found no key frame at the start, opened again to seek
    with av.open(str(path)) as source:
        streams = {s.index: s for s in source.streams}
        kinds = {packet.stream.type for packet in read_side_file(tmp_path / "fallback.side", streams)}
    assert kinds == {"audio"}


def test_a_ts_across_the_33_bit_wrap_opened_past_it_falls_back(tmp_path, monkeypatch):
    """FFmpeg corrects a TS's 33-bit timestamp wrap from the first timestamp it reads: a file that starts over a
    minute before the wrap, opened past it, reads 2^33 ticks off. Such a key frame is not taken for the start."""
    path = tmp_path / "wrap.ts"
    wrap = 2**33 / 90000
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "80", "-c:v", "libx264", "-preset",
           "ultrafast", "-g", "20", "-output_ts_offset", f"{wrap - 70:.3f}", path)  # fmt: skip
    info = probe(path)
    plan = plan_segments(index_packets(path, info, 20.0), _settings(20.0))
    assert len(plan) == 4 and all(seg.decode_from_byte for seg in plan[1:])
    total = 0
    for seg in plan[1:]:
        opened = _run(path, seg.window, tmp_path / f"{seg.index}.side", monkeypatch)
        sought = _run(path, replace(seg.window, decode_from_byte=None), tmp_path / f"s{seg.index}.side", monkeypatch)
        assert opened[:3] == sought[:3] and len(opened[0]) == seg.frames
        total += len(opened[0])
    assert total == 800 - sum(1 for p in video_packets(path) if int(p["pts"]) < plan[1].emit_start)
