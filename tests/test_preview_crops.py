"""``preview --compare none``: the second pass over the range is for the contact sheet's crops only (issue 13)."""

from __future__ import annotations

import cv2
import numpy as np
from jobs_helpers import FACES, LONG, write
from read_counting import counting_reads

from gpen_video.cli import main


def _preview(src, prefix, compare, monkeypatch):  # type: ignore[no-untyped-def]
    with counting_reads(monkeypatch, src) as log:
        code = main(["preview", str(src), "--start", "0.5", "--duration", "1", "--model", "identity", "--compare",
                     compare, "-o", str(prefix), "-q", "--overwrite"])  # fmt: skip
    assert code == 0
    return cv2.imread(f"{prefix}.faces.png"), log


def test_contact_sheet_without_comparison_is_the_same_and_reads_no_more(tmp_path, monkeypatch):
    src = write(tmp_path, "faces.mp4", FACES)
    side, side_log = _preview(src, tmp_path / "side", "side", monkeypatch)
    none, none_log = _preview(src, tmp_path / "none", "none", monkeypatch)
    assert side is not None and none is not None and side.shape[0] >= 192
    assert np.array_equal(side, none)  # the same crops, before and after, of the same tracks
    assert none_log.opens == side_log.opens == 3  # probe, restore, and the crops (faces were found)
    assert none_log.bytes_read <= side_log.bytes_read


def test_preview_without_faces_or_comparison_reads_the_range_once(tmp_path, monkeypatch):
    src = write(tmp_path, "long.mp4", LONG)  # no faces: nothing for the contact sheet to crop
    sheet, log = _preview(src, tmp_path / "pv", "none", monkeypatch)
    assert sheet is not None and sheet.shape[:2] == (192, 384)  # the "no faces in this range" tile
    assert log.opens == 2  # the probe and the restore: no second pass
