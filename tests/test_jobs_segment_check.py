"""A batch segment is not read back when written: assembly, which reads it once, checks it against what its writer
wrote (frame count, the digest of its timestamps, whole packets, both ends decoded). A segment that fails is
forgotten, so the next run restores it anew; the output is never kept. The input is made with the ffmpeg CLI, the
segment damaged with plain byte edits; the output is judged with ffprobe.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conformance_cases import ffmpeg
from jobs_helpers import outcome, summary
from media_checks import frame_times

from gpen_video.cli import main
from gpen_video.jobs import runner


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 24 fps, a key frame each second, B-frames: three 1-second segments."""
    path = tmp_path_factory.mktemp("in") / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24", "-frames:v", "72", "-c:v", "libx264", "-preset",
           "ultrafast", "-g", "24", "-keyint_min", "24", "-sc_threshold", "0", "-bf", "2", path)  # fmt: skip
    return path


def _batch(clip: Path, out: Path, report: Path) -> int:
    return main(["batch", str(clip), "-o", str(out), "--model", "identity", "-q", "--segment-seconds", "1",
                 "--preset", "ultrafast", "--summary", str(report)])  # fmt: skip


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


DAMAGE = {
    # the file: its last third gone (a write that did not land)
    "cut": lambda files, checks: (_cut(files[1]), checks)[1],
    # the record: one frame more than the file holds, or other timestamps than it holds
    "count": lambda files, checks: [*checks[:1], replace(checks[1], frames=checks[1].frames + 1), *checks[2:]],
    "times": lambda files, checks: [*checks[:1], replace(checks[1], pts_digest=checks[0].pts_digest), *checks[2:]],
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_segment_fails_assembly_and_is_restored_anew(clip: Path, tmp_path: Path, monkeypatch, damage) -> None:
    real = runner.assemble
    calls = []

    def damaging(info, files, starts, output, durations, pts, side_files, checks, *rest):  # type: ignore[no-untyped-def]
        if not calls:
            checks = DAMAGE[damage](files, checks)
        calls.append(output)
        return real(info, files, starts, output, durations, pts, side_files, checks, *rest)

    monkeypatch.setattr(runner, "assemble", damaging)
    out = tmp_path / "out"
    assert _batch(clip, out, tmp_path / "a.json") == 1
    row = outcome(summary(tmp_path / "a.json"), "clip.mp4")
    assert row["status"] == "failed" and row["error"].startswith("segment 1: ") and "anew" in row["error"]
    assert not (out / "clip.mp4").exists()  # nothing kept, no temporary left
    assert [p.name for p in out.iterdir() if not p.name.startswith(".gpen-video-job")] == []

    assert _batch(clip, out, tmp_path / "b.json") == 0  # resumed: only the damaged segment restored again
    row = outcome(summary(tmp_path / "b.json"), "clip.mp4")
    assert row["status"] == "done" and row["segments_reused"] == [0, 2] and row["segments_computed"] == [1]
    assert frame_times(out / "clip.mp4") == frame_times(clip)
