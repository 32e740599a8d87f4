"""Conversions use the stream's own matrix and range, and round-trip within a level."""

from __future__ import annotations

import av
import numpy as np
import pytest

from gpen_video.io.colour import colour_info, colour_of_frame, from_working, to_working
from gpen_video.io.rotation import rotate_image, unrotate_image

# Y, Cb, Cr of pure red (R=255, G=B=0), 8-bit
RED = {
    ("bt709", "tv"): (63, 102, 240),
    ("bt709", "pc"): (54, 99, 255),
    ("smpte170m", "tv"): (81, 90, 240),
    ("bt2020nc", "tv"): (74, 97, 240),
}
MATRIX_ID = {"bt709": 1, "smpte170m": 6, "bt2020nc": 9}


def _yuv_frame(y: int, cb: int, cr: int, matrix: str, rng: str, size: int = 16) -> av.VideoFrame:
    frame = av.VideoFrame(size, size, "yuv420p")
    for plane, value in zip(frame.planes, (y, cb, cr), strict=True):
        arr = np.frombuffer(plane, np.uint8)
        arr[:] = value
    frame.colorspace = MATRIX_ID[matrix]
    frame.color_range = 1 if rng == "tv" else 2
    return frame


@pytest.mark.parametrize(("matrix", "rng"), list(RED))
def test_red_decodes_as_red_with_the_streams_own_matrix(matrix, rng):
    frame = _yuv_frame(*RED[(matrix, rng)], matrix, rng)
    colour = colour_of_frame(frame)
    assert (colour.matrix, colour.range) == (matrix, rng)
    bgr = to_working(frame, colour)
    assert bgr.dtype == np.uint8
    b, g, r = bgr[8, 8].astype(int)
    assert r >= 250 and g <= 6 and b <= 6, (b, g, r)


def test_the_matrix_matters():
    """Decoding BT.709 samples as BT.601 (swscale's guess) visibly shifts the colour."""
    frame = _yuv_frame(*RED[("bt709", "tv")], "bt709", "tv")
    right = to_working(frame, colour_of_frame(frame)).astype(int)
    frame.colorspace = 6
    wrong = to_working(frame, colour_of_frame(frame)).astype(int)
    assert np.abs(right - wrong).max() >= 15


def test_untagged_streams_are_guessed_by_size():
    sd = colour_info("yuv420p", 480, 2, 0, 2, 2)
    hd = colour_info("yuv420p", 1080, 2, 0, 2, 2)
    jpeg = colour_info("yuvj420p", 1080, 2, 0, 2, 2)
    assert (sd.matrix, sd.range, sd.matrix_guessed) == ("smpte170m", "tv", True)
    assert (hd.matrix, hd.range) == ("bt709", "tv")
    assert jpeg.range == "pc"


@pytest.mark.parametrize(("pix_fmt", "tolerance"), [("yuv444p", 1), ("yuv444p10le", 2), ("gbrp", 0)])
def test_round_trip_within_a_level(pix_fmt, tolerance):
    rng = np.random.default_rng(0)
    deep = "10" in pix_fmt
    src = av.VideoFrame.from_ndarray(rng.integers(16, 235, (32, 48, 3), dtype=np.uint8), format="bgr24")
    frame = src.reformat(format=pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
    frame.colorspace, frame.color_range = 1, 1
    colour = colour_of_frame(frame)
    image = to_working(frame, colour)
    assert image.dtype == (np.uint16 if deep else np.uint8)
    back = from_working(image, colour, pix_fmt)
    for a, b in zip(frame.planes, back.planes, strict=True):
        dtype = np.uint16 if deep else np.uint8
        x = np.frombuffer(a, dtype).astype(int)
        y = np.frombuffer(b, dtype).astype(int)
        assert np.abs(x - y).max() <= tolerance
    assert int(back.colorspace) == 1 and int(back.color_range) == 1


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotation_round_trip(rotation):
    image = np.arange(2 * 3 * 3).reshape(2, 3, 3).astype(np.uint8)
    up = rotate_image(image, rotation)
    assert up.shape[:2] == ((3, 2) if rotation % 180 else (2, 3))
    assert (unrotate_image(up, rotation) == image).all()


def test_rotation_90_is_counter_clockwise():
    """A display matrix of +90° (PyAV's reading) shows the picture turned 90° counter-clockwise."""
    image = np.zeros((2, 3), np.uint8)
    image[0, 2] = 1  # top-right corner
    assert rotate_image(image, 90)[0, 0] == 1  # goes to the top-left


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuvj420p", "yuv422p10le", "yuv444p12le", "gbrp"])
def test_swscale_threads_change_no_sample(pix_fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``colour.SWS_THREADS`` is a matter of CPU time only: both ways, every format, a whole 1080p picture's samples
    are the same on one thread, on two, and as FFmpeg chooses (0)."""
    from gpen_video.io import colour as module

    deep = pix_fmt.endswith(("10le", "12le"))
    rng = np.random.default_rng(3)
    image = rng.integers(0, 65536 if deep else 256, (1080, 1920, 3)).astype(np.uint16 if deep else np.uint8)
    info = colour_info(pix_fmt, 1080, 1, 1 if not pix_fmt.startswith("yuvj") else 2, 1, 1)
    results = []
    for threads in (1, 2, 0):
        monkeypatch.setattr(module, "SWS_THREADS", threads)
        frame = from_working(image, info, pix_fmt)
        results.append(([bytes(p) for p in frame.planes], to_working(frame, info)))
    for planes, back in results[1:]:
        assert planes == results[0][0] and np.array_equal(back, results[0][1])
