"""Decoding on the GPU (``io.hw_decode``, ``--hw-decode``): NVDEC's pictures are the CPU decoder's, in the stream's
format; where NVDEC cannot decode, the CPU does, said in one line.

On a machine without a CUDA device the NVDEC run is the fallback's twin: the same pictures, decoded on the CPU."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_checks import video_planes

from gpen_video.io.hw_decode import choose_decode, to_stream_format
from gpen_video.synthetic import ClipSpec, FaceScene, write_clip

#: (the stream's format, the layout a hardware decoder hands it in, its chroma subsampling, the depth)
LAYOUTS = [("yuv420p", "nv12", 2, 8), ("yuv420p10le", "p010le", 2, 10), ("yuv420p12le", "p016le", 2, 12),
           ("yuv444p10le", "yuv444p16le", 1, 10)]  # fmt: skip


def _write(plane: av.video.plane.VideoPlane, values: np.ndarray) -> None:
    row = plane.line_size // values.itemsize
    np.frombuffer(plane, values.dtype).reshape(plane.height, row)[:, : values.shape[1]] = values


@pytest.mark.parametrize(("pix_fmt", "device_fmt", "sub", "depth"), LAYOUTS)
def test_a_hardware_layout_comes_back_as_the_stream_format_exactly(pix_fmt, device_fmt, sub, depth) -> None:
    """The layout NVDEC hands (made here sample by sample: U and V interleaved, samples in the high bits) turned
    back into the stream's format gives every sample, the timing and the colour tags (the CPU twin of NVDEC)."""
    rng = np.random.default_rng(depth)
    width, height = 176, 144
    dtype = np.dtype("<u2") if depth > 8 else np.dtype(np.uint8)
    y = rng.integers(0, 2**depth, (height, width)).astype(dtype)
    u, v = (rng.integers(0, 2**depth, (height // sub, width // sub)).astype(dtype) for _ in range(2))
    up = 16 - depth if depth > 8 else 0
    device = av.VideoFrame(width, height, device_fmt)
    if len(device.planes) == 2:
        chroma = np.empty((height // sub, 2 * width // sub), dtype)
        chroma[:, 0::2], chroma[:, 1::2] = u, v
        _write(device.planes[0], y << up)
        _write(device.planes[1], chroma << up)
    else:
        for plane, values in zip(device.planes, (y, u, v), strict=True):
            _write(plane, values << up)
    device.pts, device.time_base = 1001, Fraction(1, 24000)
    device.colorspace, device.color_range = 1, 1  # BT.709, limited
    back = to_stream_format(device, pix_fmt)
    assert back.format.name == pix_fmt and (back.pts, back.time_base) == (1001, Fraction(1, 24000))
    assert (back.colorspace, back.color_range) == (1, 1)
    for plane, want in zip(back.planes, (y, u, v), strict=True):
        got = np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width]
        assert np.array_equal(got, want)
    assert to_stream_format(back, pix_fmt) is back  # a frame already in the stream's format passes as it is


def test_a_codec_nvdec_cannot_decode_falls_back_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gpen_video"):
        assert choose_decode("prores", True) is None
    lines = [r for r in caplog.records if r.name == "gpen_video.io.hw_decode"]
    assert [(r.levelno, r.getMessage()) for r in lines] == [
        (logging.WARNING, "NVDEC has no decoder for prores: decoding on the CPU")
    ]


def test_no_cuda_device_falls_back_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """A device that does not open (here: CUDA device 97, which no machine has) is found before the file is opened."""
    with caplog.at_level(logging.INFO, logger="gpen_video"):
        assert choose_decode("h264", True, gpu=97) is None
    lines = [r.getMessage() for r in caplog.records if r.name == "gpen_video.io.hw_decode"]
    assert len(lines) == 1 and lines[0].startswith("no CUDA device opens for NVDEC (")


def test_cpu_decode_asks_for_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gpen_video"):
        assert choose_decode("h264", False) is None
    assert not caplog.records


def _restore(clip: Path, out: Path, hw_decode: str) -> tuple[dict, str]:
    report = out.with_suffix(".json")
    done = subprocess.run([sys.executable, "-m", "gpen_video", "restore", str(clip), "-o", str(out), "--model",
                           "identity", "--hw-decode", hw_decode, "--report", str(report)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(report.read_text()), done.stderr


def _nvdec_against_cpu(tmp_path: Path) -> tuple[dict, str]:
    clip = write_clip(tmp_path / "in.mp4", ClipSpec(scene=FaceScene(width=320, height=240, frames=24), audio=()))
    report, stderr = _restore(clip, tmp_path / "nvdec.mp4", "nvdec")
    cpu_report, _ = _restore(clip, tmp_path / "cpu.mp4", "off")
    assert cpu_report["decoder"] == "cpu" and report["frames_written"] == 24
    for a, b in zip(video_planes(tmp_path / "nvdec.mp4"), video_planes(tmp_path / "cpu.mp4"), strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    return report, stderr


@pytest.mark.gpu
def test_nvdec_gives_the_cpu_decoders_pictures(tmp_path: Path) -> None:
    report, stderr = _nvdec_against_cpu(tmp_path)
    assert report["decoder"] == "nvdec", stderr


def test_nvdec_asked_without_a_device_decodes_on_the_cpu(tmp_path: Path) -> None:
    """The GPU test's twin: where no CUDA device opens, ``--hw-decode nvdec`` says so in one line and gives the same
    pictures (where one does, the run decodes with NVDEC, and its pictures are the CPU's all the same)."""
    report, stderr = _nvdec_against_cpu(tmp_path)
    nvdec_lines = [line for line in stderr.splitlines() if "NVDEC" in line]
    if report["decoder"] == "cpu":
        assert len(nvdec_lines) == 1 and nvdec_lines[0].endswith("decoding on the CPU")
    else:
        assert report["decoder"] == "nvdec" and not any("decoding on the CPU" in line for line in nvdec_lines)


def test_a_file_nvdec_cannot_open_is_decoded_on_the_cpu(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A device lost between the check and the open (here: CUDA device 97, asked for directly) costs one line, not
    the run: the reader opens the file again without it and decodes every frame on the CPU."""
    from av.codec.hwaccel import HWAccel

    from gpen_video.io.probe import probe
    from gpen_video.io.reader import VideoReader

    clip = write_clip(tmp_path / "in.mp4", ClipSpec(scene=FaceScene(width=160, height=96, frames=6), audio=()))
    accel = HWAccel("cuda", device="97", allow_software_fallback=True)
    with (
        caplog.at_level(logging.WARNING, logger="gpen_video"),
        VideoReader(clip, probe(clip), hwaccel=accel) as reader,
    ):
        frames = list(reader)
    assert len(frames) == 6 and reader.stats.decoder == "cpu"
    lines = [r.getMessage() for r in caplog.records if r.name == "gpen_video.io.reader"]
    assert len(lines) == 1 and lines[0].startswith("NVDEC cannot open the file") and lines[0].endswith("on the CPU")
