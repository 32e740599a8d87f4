"""``--start`` into containers without an index (MPEG-TS, MPEG-PS): the range's exact frames, few bytes read.

Their demuxers seek by timestamp to any packet before the target, not to a key frame, so a naive seek starts
decoding at the next key frame, past the range. Inputs are made with the ffmpeg CLI (H.264 and MPEG-2, a key
frame every 50 frames); which frames lie in the range comes from ffprobe, and so do the output's timestamps.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from conformance_cases import ffmpeg, ffprobe_json
from read_counting import counting_reads, packet_spans

from gpen_video.cli import main
from gpen_video.config import FacesConfig
from gpen_video.faces.stage import lookahead_frames, warm_start
from gpen_video.io.probe import probe

SOURCE = ("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25")
MAKE = {
    "ts": ("-c:v", "libx264", "-g", "50", "-bf", "2", "-pix_fmt", "yuv420p"),
    "mpg": ("-c:v", "mpeg2video", "-g", "50", "-bf", "2", "-q:v", "4"),
}


pytestmark = pytest.mark.usefixtures("restore_gpen_logger")  # these tests call main() in-process


def ffprobe_times(path: Path) -> list[Fraction]:
    """Presentation times (seconds, exact) of the video frames, in order, as ffprobe decodes them."""
    entries = "stream=time_base:frame=pts,best_effort_timestamp"
    data = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", entries)
    tb = Fraction(data["streams"][0]["time_base"])
    return sorted(int(f.get("pts", f["best_effort_timestamp"])) * tb for f in data["frames"])


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("unindexed")
    made = {}
    for ext, args in MAKE.items():
        made[ext] = folder / f"clip.{ext}"
        ffmpeg(*SOURCE, "-t", "12", *args, made[ext])
    made["long.ts"] = folder / "long.ts"  # 60 s: a 1-s preview from the middle must not read it through
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "60", *MAKE["ts"], made["long.ts"])
    return made


def _range(times: list[Fraction], start: float, duration: float) -> list[Fraction]:
    origin = times[0]
    lo, hi = origin + Fraction(start), origin + Fraction(start) + Fraction(duration)
    return [t for t in times if lo <= t < hi]


@pytest.mark.parametrize("ext", ["ts", "mpg"])
@pytest.mark.parametrize("start", [5.0, 3.3])  # just after a key frame (the next one is past the range); mid-GOP
def test_restore_start_gives_exactly_the_frames_of_the_range(clips, tmp_path, ext, start):
    src, out = clips[ext], tmp_path / "out.mkv"
    assert main(["restore", str(src), "-o", str(out), "--model", "identity", "--start", str(start),
                 "--duration", "1", "-q"]) == 0  # fmt: skip
    want = _range(ffprobe_times(src), start, 1)
    assert len(want) == 25
    got = ffprobe_times(out)
    assert [t - got[0] for t in got] == [t - want[0] for t in want]


@pytest.mark.parametrize("ext", ["ts", "mpg"])
def test_preview_in_the_middle_gives_the_range(clips, tmp_path, ext):
    prefix = tmp_path / "pv"
    assert main(["preview", str(clips[ext]), "--start", "5", "--duration", "1", "--model", "identity",
                 "--compare", "none", "-o", str(prefix), "-q"]) == 0  # fmt: skip
    want = _range(ffprobe_times(clips[ext]), 5, 1)
    (restored,) = tmp_path.glob("pv.restored.*")
    got = ffprobe_times(restored)
    assert [t - got[0] for t in got] == [t - want[0] for t in want]


def test_preview_of_the_middle_of_a_ts_reads_a_small_fraction(clips, tmp_path, monkeypatch):
    src, prefix = clips["long.ts"], tmp_path / "pv"
    size = src.stat().st_size
    with counting_reads(monkeypatch, src) as reads:
        assert main(["preview", str(src), "--start", "31", "--duration", "1", "--model", "identity",
                     "--compare", "none", "-o", str(prefix), "-q"]) == 0  # fmt: skip
    assert reads.opens >= 1
    # the faces stage's warm-up: from the sync frame before the range (less its scene-cut history): sync frames
    # fall on the source clock (this TS starts at 1.4 s), here at 28 s, 26.6 s into the stream
    origin = probe(src).video.start_time
    faces = FacesConfig()
    warm = warm_start(faces).before(origin + 31, 1.01 / 25) - origin
    assert 26 < warm < 27
    frames = round((32 - warm) * 25) + lookahead_frames(faces)  # the warm-up, the range and the look-ahead
    # opening a TS reads its head and FFmpeg's duration estimate its last 250000 bytes, whatever the file's size;
    # of the packets between, the preview reads those frames and the seeks' probes only: two GOPs of 50 more
    spans = packet_spans(src)
    body = [span for span in spans if 65536 <= span[0] < size - 250000]
    assert len(spans) == 1500 and len(body) > 1000
    assert len(reads.touched(body)) <= frames + 100, (len(reads.touched(body)), frames)
    assert reads.distinct_bytes < (frames + 100) / 1500 * size + 65536 + 250000, (reads.distinct_bytes, size)
    want = _range(ffprobe_times(src), 31, 1)
    (restored,) = tmp_path.glob("pv.restored.*")
    got = ffprobe_times(restored)
    assert len(got) == len(want) == 25
