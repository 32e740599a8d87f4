"""Batch assembly keeps an archive master's pixel aspect and field order (issue 22).

The segments are NUT, which keeps no field order tag and (as PyAV writes it) no pixel aspect: the assembled
output must still say the input's SAR/DAR, field order and every frame's interlaced/top-field-first flags, as
ffprobe reads them. Inputs are made by the ffmpeg CLI: 90x72 (PAL / 8), 10 frames, a key frame every 3, cut in
segments of 0.12 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_cases import (
    display_kept,
    ffmpeg,
    ffprobe,
    ffprobe_exe,
    frames_flagged_like_input,
    video_field,
    video_src,
)
from jobs_helpers import outcome, summary

pytestmark = pytest.mark.skipif(ffprobe_exe() is None, reason="ffprobe missing: run scripts/setup.sh --test")

GOP = ["-g", "3"]


def master(sar: str, fields: str) -> list[str]:
    """10 frames of PAL / 8 with ``sar`` and ``fields`` (tff, bff, prog) set on the frames, as a capture's."""
    return [*video_src("90x72", seconds=0.4), "-vf", f"setsar={sar},setfield={fields}"]


MASTERS = {
    # name: ffmpeg arguments, whether the input is interlaced
    "ffv1_tff_4x3.mkv": ([*master("16/15", "tff"), "-c:v", "ffv1", *GOP, "-field_order", "tt"], True),
    "ffv1_bff_16x9.mkv": ([*master("64/45", "bff"), "-c:v", "ffv1", *GOP, "-field_order", "bb"], True),
    "prores_bff_16x9.mov": ([*master("64/45", "bff"), "-c:v", "prores_ks", "-flags", "+ildct", "-top", "0"], True),
    "ffv1_wide_prog.mkv": ([*master("4/3", "prog"), "-c:v", "ffv1", *GOP], False),
}


@pytest.fixture(scope="module")
def assembled(tmp_path_factory: pytest.TempPathFactory, run_cli) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("masters")
    inputs, out = root / "in", root / "out"
    inputs.mkdir()
    for name, (args, _) in MASTERS.items():
        ffmpeg(*args, inputs / name)
    result = run_cli("batch", inputs, "-o", out, "--model", "identity", "--segment-seconds", "0.12",
                     "--summary", root / "s.json", "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return inputs, out, summary(root / "s.json")


@pytest.mark.parametrize("name", list(MASTERS))
def test_batch_keeps_aspect_and_fields(name: str, assembled) -> None:
    inputs, out, report = assembled
    row = outcome(report, name)
    assert row["status"] == "done" and row["segments"] >= 2, row
    src, got = ffprobe(inputs / name), ffprobe(out / name)
    display_kept(src, got)
    video_field("codec_name", "field_order")(src, got)
    if MASTERS[name][1]:
        frames_flagged_like_input(src, got)
