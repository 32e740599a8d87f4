"""Splicing composed pixels into the source frame gives the same samples as the whole-frame conversion."""

from __future__ import annotations

import av
import numpy as np
import pytest

from gpen_video.io.colour import colour_of_frame, from_working, to_working
from gpen_video.io.splice import changed_boxes, frame_samples, keep_untouched_samples, splice_composed


def _source(width: int, height: int, pix_fmt: str, seed: int) -> av.VideoFrame:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(xx * 3 + yy) % 256, (yy * 2) % 256, (xx + 2 * yy) % 256], -1) + rng.integers(
        0, 30, (height, width, 3)
    )
    frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="bgr24")
    frame = frame.reformat(format=pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
    frame.colorspace, frame.color_range = 1, 1
    return frame


def _composed(source: av.VideoFrame, boxes: list[tuple[int, int, int, int]], seed: int):
    colour = colour_of_frame(source)
    image = to_working(source, colour).copy()
    mask = np.zeros(image.shape[:2], np.float32)
    rng = np.random.default_rng(seed)
    top = 65535 if image.dtype == np.uint16 else 255
    for x0, y0, x1, y1 in boxes:  # a feathered patch of new pixels, as a pasted face
        yy, xx = np.mgrid[y0:y1, x0:x1]
        cy, cx, r = (y0 + y1) / 2, (x0 + x1) / 2, min(x1 - x0, y1 - y0) / 2
        alpha = np.clip(1.2 - np.hypot(yy - cy, xx - cx) / r, 0, 1).astype(np.float32)
        mask[y0:y1, x0:x1] = np.maximum(mask[y0:y1, x0:x1], alpha)
        image[y0:y1, x0:x1][alpha > 0] = rng.integers(0, top, ((alpha > 0).sum(), 3)).astype(image.dtype)
    return colour, image, mask


def _planes(frame: av.VideoFrame) -> list[bytes]:
    return [samples.tobytes() for samples in frame_samples(frame)]


@pytest.mark.parametrize(
    ("pix_fmt", "width", "height", "boxes"),
    [
        ("yuv420p", 640, 360, [(40, 50, 200, 230), (400, 100, 560, 300)]),  # two faces, far apart
        ("yuv420p", 333, 241, [(250, 180, 333, 241), (0, 0, 61, 47)]),  # odd size, faces at the edges
        ("yuv422p10le", 480, 270, [(100, 60, 260, 220), (200, 90, 330, 250)]),  # overlapping, 10-bit
        ("yuv444p", 320, 240, [(17, 23, 141, 170)]),
        ("gbrp", 320, 240, [(60, 40, 180, 200)]),
        ("nv12", 320, 240, [(64, 40, 190, 210)]),  # chroma interleaved in one plane
    ],
)
def test_splice_equals_whole_frame_conversion(pix_fmt, width, height, boxes):
    source = _source(width, height, pix_fmt, seed=1)
    colour, image, mask = _composed(source, boxes, seed=2)
    whole = from_working(image, colour, pix_fmt)
    keep_untouched_samples(whole, source, mask, 0)
    spliced = splice_composed(source, image, mask, colour, 0)
    assert spliced.format.name == pix_fmt and (spliced.width, spliced.height) == (width, height)
    assert _planes(spliced) == _planes(whole)
    # told where the pasted regions are (compose's), it looks only there and gives the same samples
    assert _planes(splice_composed(source, image, mask, colour, 0, boxes)) == _planes(whole)
    assert _planes(spliced) != _planes(source)  # the faces did go in
    assert (spliced.colorspace, spliced.color_range) == (whole.colorspace, whole.color_range)


def test_nothing_pasted_is_the_source_samples():
    source = _source(320, 240, "yuv420p", seed=3)
    colour, image, mask = _composed(source, [], seed=4)
    assert changed_boxes(mask) == []
    assert _planes(splice_composed(source, image, mask, colour, 0)) == _planes(source)


def test_boxes_cover_every_pasted_pixel_with_a_margin():
    mask = np.zeros((270, 480), np.float32)
    mask[100:140, 30:90] = 0.5
    mask[200, 400] = 1e-3
    boxes = changed_boxes(mask)
    assert len(boxes) == 2
    covered = np.zeros(mask.shape, bool)
    for x0, y0, x1, y1 in boxes:
        assert x0 % 16 == 0 and y0 % 16 == 0
        covered[y0:y1, x0:x1] = True
    assert covered[mask > 0].all()
    grown = np.zeros(mask.shape, bool)
    grown[100 - 16 : 140 + 16, 30 - 16 : 90 + 16] = True
    assert covered[grown].all()  # at least a block of margin around the pasted pixels
    assert covered.mean() < 0.2  # and not the whole frame


@pytest.mark.parametrize("seed", range(6))
def test_boxes_within_the_pasted_regions_are_the_boxes_of_the_whole_mask(seed):
    """``changed_boxes(mask, within)`` looks only around ``within`` and gives what a look at the whole mask gives:
    faces at the frame's edges, odd frame sizes, a face one pixel wide, faces a margin apart and apart by more."""
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(40, 300)), int(rng.integers(40, 500))
    mask = np.zeros((height, width), np.float32)
    regions = []
    for _ in range(int(rng.integers(1, 5))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = min(width, x0 + int(rng.integers(1, 90))), min(height, y0 + int(rng.integers(1, 90)))
        regions.append((x0, y0, x1, y1))
        patch = rng.uniform(0, 1, (y1 - y0, x1 - x0)).astype(np.float32)
        patch[patch < 0.7] = 0  # a region is not all pasted: its mask feathers to nothing
        mask[y0:y1, x0:x1] = np.maximum(mask[y0:y1, x0:x1], patch)
    whole = changed_boxes(mask)
    assert whole  # the test pasted something
    assert changed_boxes(mask, regions) == whole
    assert changed_boxes(mask, []) == []
