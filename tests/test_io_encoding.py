"""`--video-codec auto` and explicit choices."""

from __future__ import annotations

from fractions import Fraction

import pytest

from gpen_video.config import OutputConfig
from gpen_video.errors import ConfigError
from gpen_video.io.colour import colour_info
from gpen_video.io.encoding import choose_encoding
from gpen_video.io.probe import VideoInfo


def _video(codec: str, pix_fmt: str, profile: str | None = None, bit_rate: int | None = None) -> VideoInfo:
    return VideoInfo(
        index=0, codec=codec, profile=profile, width=1920, height=1080, time_base=Fraction(1, 24000),
        frame_rate=Fraction(24000, 1001), is_vfr=False, frame_count=10, start_time=0.0, duration=1.0, rotation=0,
        colour=colour_info(pix_fmt, 1080, 1, 1, 1, 1), bit_rate=bit_rate, sample_aspect_ratio=None,
        field_order=None, timecode=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "profile", "want_codec", "want_fmt", "want_options"),
    [
        ("prores", "yuv422p10le", "HQ", "prores_ks", "yuv422p10le", {"profile": "hq"}),
        ("prores", "yuva444p10le", "4444", "prores_ks", "yuva444p10le", {"profile": "4444"}),
        ("dnxhd", "yuv422p10le", "DNXHR HQX", "dnxhd", "yuv422p10le", {"profile": "dnxhr_hqx"}),
        ("ffv1", "yuv444p16le", None, "ffv1", "yuv444p16le", {"level": "3"}),
        ("h264", "yuv420p", "High", "libx264", "yuv420p", {"crf": "16", "preset": "slow"}),
        ("h264", "yuv422p", "High 4:2:2", "libx264", "yuv422p", {"crf": "16"}),
        ("hevc", "yuv420p10le", "Main 10", "libx265", "yuv420p10le", {"crf": "16"}),
        ("h264", "yuv422p10le", "High 4:2:2", "libx265", "yuv422p10le", {"preset": "slow"}),
        ("mpeg2video", "yuv420p", None, "libx264", "yuv420p", {"crf": "16"}),
    ],
)
def test_auto(codec, pix_fmt, profile, want_codec, want_fmt, want_options):
    settings = choose_encoding(_video(codec, pix_fmt, profile), OutputConfig())
    assert (settings.codec, settings.pix_fmt) == (want_codec, want_fmt)
    assert want_options.items() <= settings.options.items()


def test_dnxhd_keeps_the_source_bit_rate():
    settings = choose_encoding(_video("dnxhd", "yuv422p", "DNXHD", bit_rate=120_000_000), OutputConfig())
    assert settings.options["profile"] == "dnxhd" and settings.bit_rate == 120_000_000


def test_explicit_choices_win():
    settings = choose_encoding(_video("h264", "yuv420p"), OutputConfig(video_codec="prores_ks", pix_fmt="yuv444p10le"))
    assert (settings.codec, settings.pix_fmt) == ("prores_ks", "yuv444p10le")
    x264 = choose_encoding(_video("prores", "yuv422p10le", "HQ"), OutputConfig(video_codec="libx264", crf=20))
    assert (x264.codec, x264.pix_fmt, x264.options["crf"]) == ("libx264", "yuv422p10le", "20")


@pytest.mark.parametrize(
    "config",
    [
        OutputConfig(video_codec="nope"),
        OutputConfig(video_codec="prores_ks", crf=10),
        OutputConfig(pix_fmt="yuv999p"),
        OutputConfig(video_codec="prores_ks", pix_fmt="yuv420p"),
    ],
)
def test_impossible_choices_are_config_errors(config):
    with pytest.raises(ConfigError):
        choose_encoding(_video("h264", "yuv420p"), config)


def test_a_crf_out_of_range_is_a_config_error():
    """The CRF range is declared once, in config.py; every source of settings passes that gate."""
    from gpen_video.config import load_config

    with pytest.raises(ConfigError, match="crf"):
        load_config(None, {"output.crf": 80})
