"""`gpen-video probe` tells what a file holds."""

from __future__ import annotations

import json


def test_probe_text(make_clip, run_cli):
    result = run_cli("probe", make_clip("vfr_h264_aac"))
    assert result.returncode == 0, result.stderr
    assert "(VFR)" in result.stdout and "30 frames" in result.stdout and "audio #1: aac" in result.stdout


def test_probe_json(make_clip, run_cli):
    result = run_cli("probe", make_clip("prores_hq_10bit_pcm"), "--json")
    info = json.loads(result.stdout)
    video = info["video"]
    assert video["codec"] == "prores" and video["profile"] == "HQ" and video["frame_count"] == 24
    assert video["colour"]["bit_depth"] == 10 and video["colour"]["matrix"] == "bt709"
    assert video["frame_rate"] == "24000/1001" and video["is_vfr"] is False
    assert [s["codec"] for s in info["streams"]] == ["pcm_s24le"]


def test_probe_rotation_and_tracks(make_clip, run_cli):
    rotated = json.loads(run_cli("probe", make_clip("rotated_phone"), "--json").stdout)
    assert rotated["video"]["rotation"] == 90 and rotated["video"]["colour"]["range"] == "pc"
    two = json.loads(run_cli("probe", make_clip("ffv1_444_odd_two_audio"), "--json").stdout)
    assert [(s["codec"], s["language"]) for s in two["streams"]] == [("aac", "eng"), ("flac", "fra")]
    assert (two["video"]["width"], two["video"]["height"]) == (333, 241)
