"""A preview is the production: the frames a preview (or a batch segment) writes are the ones the whole run writes.

The clip is made by the ffmpeg CLI: 10 s of a pan over insightface's t1.jpg (six faces), then, from 6.25 s, a cut
to a mirrored part of it; H.264 with a key frame every second, the cut inside a GOP. Each output is lossless (FFV1),
so ffmpeg's framemd5 of its decoded pictures is the picture the run composed, sample for sample. The faces are
compared through the ``--tracks`` rows (landmarks as written, 3 decimals), frame for frame.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from conformance_cases import ffmpeg_exe
from jobs_helpers import outcome, summary

from gpen_video.cli import main
from gpen_video.synthetic import faces_image_path

FFMPEG = ffmpeg_exe()
FPS = 24
CUT = 6.25  # seconds: frame 150, inside the GOP that starts at 6 s
FRAMES = 240
LOSSLESS = ("--model", "identity", "--video-codec", "ffv1", "-q")


def _clip(folder: Path) -> Path:
    path = folder / "pan.mkv"
    graph = (
        "[0:v]scale=960:-2,split[a][b];"
        f"[a]trim=0:{CUT},crop=480:270:'t*40':'60+t*15',setpts=PTS-STARTPTS[x];"
        f"[b]trim={CUT}:10,hflip,crop=480:270:'400-(t-{CUT})*30':150,setpts=PTS-STARTPTS[y];"
        "[x][y]concat=n=2:v=1,format=yuv420p[v]"
    )
    subprocess.run([FFMPEG, "-v", "error", "-loop", "1", "-framerate", str(FPS), "-t", "10", "-i",
                    str(faces_image_path()), "-filter_complex", graph, "-map", "[v]", "-c:v", "libx264",
                    "-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0", str(path)], check=True)  # fmt: skip
    return path


def _framemd5(path: Path) -> list[str]:
    """The md5 of every decoded picture, in order (ffmpeg's framemd5, timestamps left out)."""
    done = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],
                          capture_output=True, check=True)  # fmt: skip
    return [line.split(",")[-1].strip() for line in done.stdout.decode().splitlines() if not line.startswith("#")]


def _faces(path: Path, ids: bool = False) -> dict[int, list]:
    """Frame -> its faces' landmarks (``ids``: with their track ids), in a fixed order (by place)."""
    out: dict[int, list] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        out.setdefault(int(row["frame"]), []).append((row["landmarks"], row["track"]) if ids else row["landmarks"])
    return {frame: sorted(faces) for frame, faces in out.items()}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clip(tmp_path_factory.mktemp("preview_production"))


def _whole(clip: Path, name: str, *options: str) -> tuple[Path, list[str], dict, dict]:
    folder = clip.parent
    out = folder / f"{name}.mkv"
    code = main(["restore", str(clip), "-o", str(out), "--tracks", str(folder / f"{name}.jsonl"),
                 "--report", str(folder / f"{name}.json"), *LOSSLESS, *options])  # fmt: skip
    assert code == 0
    report = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    return clip, _framemd5(out), _faces(folder / f"{name}.jsonl", ids=True), report


@pytest.fixture(scope="module")
def whole(clip: Path) -> tuple[Path, list[str], dict, dict]:
    return _whole(clip, "whole")


def test_the_clip_has_the_cut_and_faces_across_sync_frames(whole) -> None:  # type: ignore[no-untyped-def]
    _, pictures, faces, report = whole
    assert len(pictures) == FRAMES
    assert round(CUT * FPS) in report["faces"]["scene_cuts"]
    # faces on both sides of the sync frame at 4 s (frame 96) and in the second shot
    assert all(faces.get(frame) for frame in (90, 96, 100, 160))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("start", "where"),
    [(2.0, "on a key frame"), (8.3, "mid-GOP, past two sync frames"), (CUT, "right after the cut")],
)
def test_a_preview_gives_the_frames_and_faces_of_the_whole_run(whole, tmp_path: Path, start: float, where: str) -> None:  # type: ignore[no-untyped-def]
    clip, pictures, faces, _ = whole
    code = main(["preview", str(clip), "--start", str(start), "--duration", "1", "--compare", "none",
                 "-o", str(tmp_path / "pv"), "--tracks", str(tmp_path / "pv.jsonl"),
                 "--report", str(tmp_path / "pv.json"), *LOSSLESS])  # fmt: skip
    assert code == 0
    first = math.ceil(start * FPS - 1e-6)  # the first frame at or after the start
    shown = _framemd5(tmp_path / "pv.restored.mkv")
    assert len(shown) == FPS, where
    assert shown == pictures[first : first + FPS], f"{where}: pictures differ from the whole run's"
    seen = _faces(tmp_path / "pv.jsonl", ids=True)
    assert sum(len(f) for f in seen.values()) >= FPS, where  # faces were restored in the range
    for k in range(FPS):
        mine, theirs = seen.get(k, []), faces.get(first + k, [])
        assert [lm for lm, _ in mine] == [lm for lm, _ in theirs], f"{where}: frame {first + k}'s faces differ"
        # ids name the tracks as the whole run does where the preview's warm-up reaches their start: a track
        # already followed at the sync frame it warms up from carries an id from before, which it cannot know
        if start < 8:
            assert mine == theirs, f"{where}: frame {first + k}'s track ids differ from the whole run's"
    decoded = json.loads((tmp_path / "pv.json").read_text(encoding="utf-8"))["frames_decoded"]
    if start > 5:  # the warm-up starts at the sync frame before, not at the file's start
        assert decoded < first, f"{where}: {decoded} frames decoded for a range starting at frame {first}"


@pytest.mark.slow
def test_segments_of_any_length_give_the_whole_runs_pictures(whole, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip, pictures, _, _ = whole
    for seconds in ("2",):  # 3.5 s segments: the fusion test below
        out = tmp_path / f"seg{seconds}"
        report = tmp_path / f"seg{seconds}.json"
        code = main(["batch", str(clip), "-o", str(out), "--segment-seconds", seconds, "--summary", str(report),
                     *LOSSLESS])  # fmt: skip
        assert code == 0
        assert outcome(summary(report), clip.name)["segments"] >= 3
        assert _framemd5(out / clip.name) == pictures, f"--segment-seconds {seconds}: pictures differ"


@pytest.mark.slow
def test_fusion_keeps_segments_the_whole_runs_pictures(clip: Path, whole, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """With fusion (a frame each side), a frame's pictures also depend on its neighbours' frames and faces: segments
    of 5 s (their boundary a second past a sync frame) still write what the whole run writes. A range widens its
    margins by the same ``warm_start``/``lookahead_frames`` as a segment."""
    _, fused, _, report = _whole(clip, "fused", "--fusion-frames", "1")
    assert report["fusion"]["faces"] > 0 and fused != whole[1]  # fusion changed the pictures
    out = tmp_path / "seg"
    code = main(["batch", str(clip), "-o", str(out), "--segment-seconds", "5", "--summary", str(tmp_path / "s.json"),
                 "--fusion-frames", "1", *LOSSLESS])  # fmt: skip
    assert code == 0 and outcome(summary(tmp_path / "s.json"), clip.name)["segments"] >= 2
    assert _framemd5(out / clip.name) == fused
