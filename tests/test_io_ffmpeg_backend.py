"""`--encoder-backend ffmpeg`: the user's ffmpeg (here: imageio-ffmpeg's) encodes; timing and audio stay exact."""

from __future__ import annotations

import imageio_ffmpeg
import pytest
from media_checks import frame_times, side_packets, video_stream_info

from gpen_video.synthetic import ClipSpec, FaceScene, write_clip

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.mark.parametrize("name", ["vfr_h264_aac", "rotated_phone"])
@pytest.mark.slow
def test_ffmpeg_backend_keeps_structure(name, make_clip, run_cli, tmp_path):
    src = make_clip(name)
    out = tmp_path / f"{name}.mp4"
    r = run_cli("restore", src, "-o", out, "--model", "identity", "--encoder-backend", "ffmpeg",
                "--ffmpeg-binary", FFMPEG, "--video-codec", "libx264", "--preset", "ultrafast", "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert frame_times(out) == frame_times(src)
    assert side_packets(out) == side_packets(src)
    a, b = video_stream_info(src), video_stream_info(out)
    for key in ("width", "height", "colorspace", "color_range", "color_primaries", "color_trc", "rotation"):
        assert b[key] == a[key], key


@pytest.mark.slow
def test_ffmpeg_backend_encodes_what_pyav_cannot(run_cli, tmp_path):
    src = write_clip(tmp_path / "tiny.mp4", ClipSpec(scene=FaceScene(width=160, height=96, frames=8, faces=False)))
    out = tmp_path / "tiny.av1.mkv"
    pyav = run_cli("restore", src, "-o", out, "--model", "identity", "--video-codec", "libaom-av1")
    assert pyav.returncode == 2 and "--encoder-backend ffmpeg" in pyav.stderr
    r = run_cli("restore", src, "-o", out, "--model", "identity", "--encoder-backend", "ffmpeg",
                "--ffmpeg-binary", FFMPEG, "--video-codec", "libaom-av1", "--crf", "50", "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert video_stream_info(out)["codec"] in ("libdav1d", "av1", "libaom-av1")
    assert len(frame_times(out)) == 8
    assert side_packets(out) == side_packets(src)


def test_ffmpeg_backend_cut_keeps_audio_in_range(make_clip, run_cli, tmp_path):
    src = make_clip("noface_h264")
    out = tmp_path / "cut.mp4"
    backend = ["--encoder-backend", "ffmpeg", "--ffmpeg-binary", FFMPEG, "--preset", "ultrafast"]
    cut = ["--start", "0.25", "--duration", "0.5", "-q"]
    r = run_cli("restore", src, "-o", out, "--model", "identity", *backend, *cut)
    assert r.returncode == 0, r.stderr
    times_in = [t for t in frame_times(src) if 0.25 <= t < 0.75]
    assert frame_times(out) == [t - times_in[0] for t in times_in]
    ((_, _, audio_out),) = side_packets(out)
    ((_, _, audio_in),) = side_packets(src)
    start = audio_in.index(audio_out[0])
    assert audio_in[start : start + len(audio_out)] == audio_out
    assert abs(len(audio_out) * 1024 / 48000 - 0.5) < 0.05


def test_missing_ffmpeg_binary_is_one_line(make_clip, run_cli, tmp_path):
    out = tmp_path / "x.mp4"
    r = run_cli("restore", make_clip("noface_h264"), "-o", out, "--model", "identity", "--encoder-backend", "ffmpeg",
                "--ffmpeg-binary", "/no/such/ffmpeg")  # fmt: skip
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_ffmpeg_backend_keeps_fields_and_aspect_with_another_ffmpeg(run_cli, tmp_path):
    """imageio-ffmpeg's binary (another major version than Debian's, which the conformance cases use): an MPEG-2
    bff 16:9 master into MOV as MPEG-2 keeps its tag, every frame's flags and SAR/DAR (ffprobe)."""
    from conformance_cases import display_kept, ffmpeg, ffprobe, frames_flagged_like_input, video_field, video_src

    src, out = tmp_path / "bff.mxf", tmp_path / "bff.mov"
    ffmpeg(*video_src("720x576", seconds=0.16), "-vf", "setsar=64/45,setfield=bff", "-c:v", "mpeg2video",
           "-flags", "+ildct+ilme", "-top", "0", "-b:v", "4M", src)  # fmt: skip
    r = run_cli("restore", src, "-o", out, "--model", "identity", "--encoder-backend", "ffmpeg",
                "--ffmpeg-binary", FFMPEG, "--video-codec", "mpeg2video", "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    before, after = ffprobe(src), ffprobe(out)
    for check in (display_kept, video_field("codec_name", "field_order"), frames_flagged_like_input):
        check(before, after)
