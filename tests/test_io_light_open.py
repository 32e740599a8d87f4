"""Opens of a probed file skip FFmpeg's frame-rate estimate and check the streams against the probe (issue 13)."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from conformance_cases import ffmpeg
from read_counting import counting_reads

from gpen_video.io.light_open import PROBED_INPUT_OPTIONS, analysis_differs, open_probed
from gpen_video.io.probe import open_input, probe


def _ts(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "reel.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "4",
           "-c:v", "libx264", "-g", "50", "-bf", "2", "-c:a", "aac", path)  # fmt: skip
    return path


def test_a_probed_ts_opens_with_less_analysis_and_the_same_streams(tmp_path, monkeypatch):
    path = _ts(tmp_path)
    info = probe(path)
    with counting_reads(monkeypatch, path) as full_log, open_input(path, container_options=PROBED_INPUT_OPTIONS):
        pass
    with counting_reads(monkeypatch, path) as light_log, open_probed(path, info) as container:
        assert analysis_differs(container, info) is None
        audio = container.streams.audio[0].codec_context
        assert (audio.sample_rate, audio.channels) == (info.audio[0].sample_rate, info.audio[0].channels) == (44100, 1)
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert light_log.opens == 1 and light_log.bytes_read < 0.75 * full_log.bytes_read, (light_log, full_log)


def test_a_stream_unlike_the_probe_opens_again_with_the_full_analysis(tmp_path, monkeypatch):
    path = _ts(tmp_path)
    info = probe(path)
    wrong = replace(info, video=replace(info.video, frame_rate=Fraction(30)))  # what a light analysis could miss
    with counting_reads(monkeypatch, path) as log, open_probed(path, wrong) as container:
        assert analysis_differs(container, wrong) is not None  # the full analysis says 25 too: nothing to trust more
    assert log.opens == 2
    with counting_reads(monkeypatch, path) as log, open_probed(path, info):
        pass
    assert log.opens == 1
