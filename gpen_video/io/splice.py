"""The frame that goes to the encoder after compositing: the source's own samples, with the composed
pixels converted back in only where a face was pasted.

Converting the whole working image back to the encoder's format and then restoring the untouched
samples costs two full-frame passes per frame (about 200 ms at 4K on one core); the faces cover a
fraction of it. So the source frame is copied as it is, and only boxes around the pasted pixels are
converted (with a margin, so the colour conversion's filters see the same neighbourhood as a
full-frame conversion would, and the result is the same samples) and spliced in.

An alpha plane (ProRes 4444, FFV1 yuva, PNG RGBA) is the source's matte, never the face's: a converted picture
comes back opaque, so the source's alpha samples are carried into every frame that leaves here (``carry_alpha``),
scaled with the picture where it was upscaled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import av
import cv2
import numpy as np

from gpen_video.io.colour import ColourInfo, from_working, tag_frame
from gpen_video.io.rotation import unrotate_image

BLOCK = 16  # boxes are aligned to this (chroma subsampling, swscale's dither pattern) ...
MARGIN_BLOCKS = 1  # ... and reach this many blocks past the last pasted pixel


def splice_composed(
    source: av.VideoFrame,
    image: np.ndarray,
    mask: np.ndarray,
    colour: ColourInfo,
    rotation: int,
    within: Sequence[tuple[int, int, int, int]] | None = None,
) -> av.VideoFrame:
    """``source`` with the upright composed ``image`` spliced in where ``mask > 0`` (same result as
    converting the whole image and then keeping the untouched samples, in a fraction of the time). ``within``:
    boxes outside which ``mask`` is 0 (compose's pasted regions), so only they are looked at (``changed_boxes``)."""
    fmt = source.format
    if rotation % 360 or not fmt.is_planar or not _whole_chroma_blocks(source):
        # the general path: whole frame, then keep untouched samples. An odd-sized 4:2:x frame is not
        # subsampled by exactly 2 (swscale scales 333 -> 167), so a box would not give the same chroma.
        out = from_working(image, colour, fmt.name, rotation)
        keep_untouched_samples(out, source, mask, rotation)
        carry_alpha(out, source)
        return out
    out = copy_frame(source)
    tag_frame(out, colour)  # as ``from_working`` tags a converted frame
    for x0, y0, x1, y1 in changed_boxes(mask, within):
        region = from_working(np.ascontiguousarray(image[y0:y1, x0:x1]), colour, fmt.name)
        _paste_touched(out, region, mask[y0:y1, x0:x1] > 0, x0, y0)
    carry_alpha(out, source)
    return out


def carry_alpha(out: av.VideoFrame, source: av.VideoFrame) -> None:
    """``source``'s alpha samples into ``out`` (the same pixel format), bilinearly scaled where ``out`` is larger
    (a background upscale); a format without alpha is left as it is."""
    located = _alpha_location(source.format)
    if located is None or out.format.name != source.format.name:
        return
    plane, component = located
    src = _samples(source.planes[plane], source.format, plane)
    dst = _samples(out.planes[plane], out.format, plane)
    if component is not None:
        src, dst = src[..., component], dst[..., component]
    if src.shape != dst.shape:
        src = cv2.resize(np.ascontiguousarray(src), (dst.shape[1], dst.shape[0]), interpolation=cv2.INTER_LINEAR)
    dst[...] = src


def _alpha_location(fmt: av.VideoFormat) -> tuple[int, int | None] | None:
    """(plane, component within a packed plane or None) of a format's alpha; None without alpha."""
    alpha = next((c for c in fmt.components if c.is_alpha), None)
    if alpha is None:
        return None
    sharing = sum(1 for c in fmt.components if c.plane == alpha.plane)
    if sharing == 1:
        return alpha.plane, None
    letters = re.match(r"[a-z]+?(?=\d|$|le|be)", fmt.name)  # rgba64le -> rgba, ya16le -> ya, argb -> argb
    order = letters.group(0) if letters else ""
    return (alpha.plane, order.index("a")) if "a" in order else None


def changed_boxes(
    mask: np.ndarray, within: Sequence[tuple[int, int, int, int]] | None = None
) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) covering every pixel with ``mask > 0`` plus a margin, on a BLOCK grid.

    ``within``: boxes outside which ``mask`` is 0 (None: not known). Only the blocks around them, as far as the
    margin reaches, are looked at (a full-frame pass cost 3.4 ms a 1080p frame), and the boxes are the same as
    from the whole mask: every block the margin can reach is inside, and the blocks keep their raster order."""
    if within is not None:
        if not within:
            return []
        height, width = mask.shape
        reach = BLOCK * MARGIN_BLOCKS
        x0 = max(min(box[0] for box in within) // BLOCK * BLOCK - reach, 0)
        y0 = max(min(box[1] for box in within) // BLOCK * BLOCK - reach, 0)
        x1 = min(-(-max(box[2] for box in within) // BLOCK) * BLOCK + reach, width)
        y1 = min(-(-max(box[3] for box in within) // BLOCK) * BLOCK + reach, height)
        if x1 <= x0 or y1 <= y0:
            return []
        boxes = changed_boxes(mask[y0:y1, x0:x1])
        return [(bx0 + x0, by0 + y0, bx1 + x0, by1 + y0) for bx0, by0, bx1, by1 in boxes]
    height, width = mask.shape
    rows, cols = -(-height // BLOCK), -(-width // BLOCK)
    padded = mask.astype(np.float32, copy=False)
    if (rows * BLOCK, cols * BLOCK) != (height, width):
        padded = cv2.copyMakeBorder(padded, 0, rows * BLOCK - height, 0, cols * BLOCK - width,
                                    cv2.BORDER_CONSTANT, value=0.0)  # fmt: skip
    blocks = cv2.resize(padded, (cols, rows), interpolation=cv2.INTER_AREA) > 0
    if not blocks.any():
        return []
    kernel = np.ones((2 * MARGIN_BLOCKS + 1, 2 * MARGIN_BLOCKS + 1), np.uint8)
    grown = cv2.dilate(blocks.astype(np.uint8), kernel)
    count, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    boxes = []
    for x, y, w, h, _area in stats[1:count]:
        boxes.append((x * BLOCK, y * BLOCK, min((x + w) * BLOCK, width), min((y + h) * BLOCK, height)))
    return boxes


def copy_frame(source: av.VideoFrame) -> av.VideoFrame:
    """A new frame with ``source``'s samples (planar formats), for writing into."""
    out = av.VideoFrame(source.width, source.height, source.format.name)
    for index, (plane_out, plane_src) in enumerate(zip(out.planes, source.planes, strict=True)):
        _samples(plane_out, source.format, index)[:] = _samples(plane_src, source.format, index)
    return out


def _paste_touched(out: av.VideoFrame, region: av.VideoFrame, touched: np.ndarray, x0: int, y0: int) -> None:
    """Write ``region``'s samples into ``out`` at (x0, y0) where ``_touched_blocks`` says so, plane by plane (the
    alpha too: ``carry_alpha`` puts the source's back)."""
    fmt = out.format
    for index, (plane_out, plane_reg) in enumerate(zip(out.planes, region.planes, strict=True)):
        sx, sy = _subsampling(out, index)
        block = _touched_blocks(touched, plane_reg.width, plane_reg.height, sx, sy)
        reg = _samples(plane_reg, fmt, index)
        dst = _samples(plane_out, fmt, index)[y0 // sy : y0 // sy + reg.shape[0], x0 // sx : x0 // sx + reg.shape[1]]
        np.copyto(dst, reg, where=block if reg.ndim == 2 else block[..., None])


def keep_untouched_samples(out: av.VideoFrame, source: av.VideoFrame, mask: np.ndarray, rotation: int) -> None:
    """Copy the source's samples into ``out`` wherever the upright ``mask`` is zero, plane by plane.

    Chroma planes are subsampled: a chroma sample is kept only if every luma pixel it covers is
    untouched, so the face edge never mixes old and new chroma. Packed formats are left as converted.
    """
    if not out.format.is_planar or out.format.name != source.format.name:
        return
    touched = unrotate_image(mask > 0, rotation)
    for index, (plane_out, plane_src) in enumerate(zip(out.planes, source.planes, strict=True)):
        sx, sy = _subsampling(source, index)
        block = _touched_blocks(touched, plane_src.width, plane_src.height, sx, sy)
        src, dst = _samples(plane_src, source.format, index), _samples(plane_out, source.format, index)
        np.copyto(dst, src, where=~block if src.ndim == 2 else ~block[..., None])


def frame_samples(frame: av.VideoFrame) -> list[np.ndarray]:
    """Each plane's samples (without row padding), for comparing planar frames."""
    return [_samples(plane, frame.format, i) for i, plane in enumerate(frame.planes)]


def _whole_chroma_blocks(frame: av.VideoFrame) -> bool:
    return all(frame.width % sx == 0 and frame.height % sy == 0
               for sx, sy in (_subsampling(frame, i) for i in range(len(frame.planes))))  # fmt: skip


def _subsampling(frame: av.VideoFrame, index: int) -> tuple[int, int]:
    plane = frame.planes[index]
    return -(-frame.width // plane.width), -(-frame.height // plane.height)  # ceil: odd sizes round up


def _touched_blocks(touched: np.ndarray, w: int, h: int, sx: int, sy: int) -> np.ndarray:
    """(h, w): True where any pixel a plane sample covers is touched (ORs of strided views: numpy's
    ``any`` over a reshaped axis pair is several times slower)."""
    if (sx, sy) == (1, 1):
        return touched
    height, width = touched.shape
    if (h * sy, w * sx) != (height, width):
        touched = np.pad(touched, ((0, h * sy - height), (0, w * sx - width)), mode="edge")
    block = touched[0::sy, 0::sx].copy()
    for dy in range(sy):
        for dx in range(sx):
            if dy or dx:
                block |= touched[dy::sy, dx::sx]
    return block


def _samples(plane: av.video.plane.VideoPlane, fmt: av.VideoFormat, index: int) -> np.ndarray:
    """A writable (height, width[, components]) view of plane ``index``'s samples, without the row padding."""
    components = sum(1 for c in fmt.components if c.plane == index)
    dtype = np.uint16 if max(c.bits for c in fmt.components) > 8 else np.uint8
    rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, -1)
    view = rows[:, : plane.width * components]
    return view if components == 1 else view.reshape(plane.height, plane.width, components)
