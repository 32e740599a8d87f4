"""`gpen-video restore --model identity` keeps every frame, timestamp, audio packet, colour tag and rotation."""

from __future__ import annotations

from pathlib import Path

import pytest
from media_checks import frame_times, psnr, side_packets, video_planes, video_stream_info

VALID = ["vfr_h264_aac", "prores_hq_10bit_pcm", "rotated_phone", "ffv1_444_odd_two_audio", "noface_h264"]


@pytest.fixture(scope="module")
def restored(make_clip, run_cli, tmp_path_factory):
    """Restore each valid clip once with the identity restorer; map name -> (input, output)."""
    out_dir = tmp_path_factory.mktemp("restored")
    results = {}
    for name in [*VALID, "noface_prores", "noface_ffv1"]:
        src = make_clip(name)
        dst = out_dir / f"{name}.restored{src.suffix}"
        before = src.read_bytes()
        r = run_cli("restore", src, "-o", dst, "--model", "identity", "-q")
        assert r.returncode == 0, r.stderr
        assert src.read_bytes() == before, "the input was modified"
        results[name] = (src, dst)
    return results


@pytest.mark.parametrize("name", VALID)
@pytest.mark.slow
def test_frames_and_timestamps_equal(restored, name):
    src, dst = restored[name]
    assert frame_times(dst) == frame_times(src)


@pytest.mark.parametrize("name", VALID)
@pytest.mark.slow
def test_side_streams_bit_identical(restored, name):
    src, dst = restored[name]
    got, want = side_packets(dst), side_packets(src)
    assert [(t, c, len(p)) for t, c, p in got] == [(t, c, len(p)) for t, c, p in want]
    assert got == want


@pytest.mark.parametrize("name", VALID)
@pytest.mark.slow
def test_geometry_colour_and_rotation_kept(restored, name):
    src, dst = restored[name]
    a, b = video_stream_info(src), video_stream_info(dst)
    for key in ("width", "height", "pix_fmt", "colorspace", "color_range", "color_primaries", "color_trc", "rotation"):
        assert b[key] == a[key], key


@pytest.mark.slow
def test_vfr_stays_vfr(restored):
    _src, dst = restored["vfr_h264_aac"]
    deltas = {b - a for a, b in zip(frame_times(dst), frame_times(dst)[1:], strict=False)}
    assert len(deltas) > 1


@pytest.mark.slow
def test_intermediate_codecs_keep_their_family_and_profile(restored):
    _, prores = restored["prores_hq_10bit_pcm"]
    info = video_stream_info(prores)
    assert (info["codec"], info["profile"], info["pix_fmt"]) == ("prores", "HQ", "yuv422p10le")
    _, ffv1 = restored["ffv1_444_odd_two_audio"]
    assert video_stream_info(ffv1)["codec"] == "ffv1"


@pytest.mark.slow
def test_noface_ffv1_is_bit_identical(restored):
    src, dst = restored["noface_ffv1"]
    a, b = video_planes(src), video_planes(dst)
    assert len(a) == len(b)
    for pa, pb in zip(a, b, strict=False):
        for x, y in zip(pa, pb, strict=False):
            assert (x == y).all()


@pytest.mark.parametrize(("name", "peak", "floor"), [("noface_prores", 1023, 45.0), ("noface_h264", 255, 38.0)])
@pytest.mark.slow
def test_noface_within_codec_loss(restored, name, peak, floor):
    src, dst = restored[name]
    a, b = video_planes(src), video_planes(dst)
    assert len(a) == len(b)
    worst = min(psnr(pa[0], pb[0], peak) for pa, pb in zip(a, b, strict=False))
    assert worst >= floor


@pytest.mark.slow
def test_start_and_duration_cut_audio_in_sync(make_clip, run_cli, tmp_path: Path):
    src = make_clip("noface_h264")
    dst = tmp_path / "cut.mp4"
    r = run_cli("restore", src, "-o", dst, "--model", "identity", "--start", "0.25", "--duration", "0.5", "-q")
    assert r.returncode == 0, r.stderr
    times_in = [t for t in frame_times(src) if 0.25 <= t < 0.75]
    times_out = frame_times(dst)
    assert len(times_out) == len(times_in) == 12
    offset = times_in[0]
    assert times_out == [t - offset for t in times_in]
    ((_, _, audio_out),) = side_packets(dst)
    ((_, _, audio_in),) = side_packets(src)
    # the audio kept is a contiguous run of the source's packets covering the same half second
    start = audio_in.index(audio_out[0])
    assert audio_in[start : start + len(audio_out)] == audio_out
    assert abs(len(audio_out) * 1024 / 48000 - 0.5) < 0.05
