"""Colour: which matrix, range, primaries and transfer a stream uses, and exact conversions.

swscale, left to itself, decodes every untagged YUV stream as BT.601 limited range, which shifts
the colour of HD and 2020 material. Here the conversion to the working format (BGR, 8 or 16 bits a
channel) always names the stream's own matrix and range, and the conversion back names the encoder's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import av
import numpy as np

from gpen_video.io.rotation import rotate_image, unrotate_image

#: swscale's threads for each conversion. The samples are the same with any number (a test); measured here
#: (2 cores; to_working, median CPU ms a picture over 4 alternating rounds), FFmpeg's own choice cost the most CPU
#: (1080p 1.3, 4K 5.0) against one thread (1.0, 3.3) or two (1.2, 4.6), and for a face's region starting threads
#: costs more than the conversion (600x600 to yuv420p: 0.75 ms on one thread, 1.35 on two, 1.1 as FFmpeg chose)
SWS_THREADS = 1


if TYPE_CHECKING:
    import torch

# FFmpeg's AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic / AVColorRange numbers
_MATRIX_NAMES = {0: "rgb", 1: "bt709", 2: "unknown", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
                 8: "ycgco", 9: "bt2020nc", 10: "bt2020c"}  # fmt: skip
_PRIMARIES_NAMES = {1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
                    8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432"}  # fmt: skip
_TRANSFER_NAMES = {1: "bt709", 2: "unknown", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m",
                   8: "linear", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084",
                   18: "arib-std-b67"}  # fmt: skip
_RANGE_NAMES = {0: "unknown", 1: "tv", 2: "pc"}

# matrix name -> swscale colourspace name
_SWS_MATRIX = {"bt709": "ITU709", "bt470bg": "ITU601", "smpte170m": "SMPTE170M", "smpte240m": "SMPTE240M",
               "fcc": "FCC", "bt2020nc": "BT2020", "bt2020c": "BT2020"}  # fmt: skip


@dataclass(frozen=True)
class ColourInfo:
    """How a stream's samples are to be read as colour."""

    pix_fmt: str
    bit_depth: int
    matrix: str  # bt709 | smpte170m | bt470bg | bt2020nc | rgb | ...
    range: str  # tv (limited) | pc (full)
    primaries: str
    transfer: str
    matrix_guessed: bool = False  # the stream did not say; chosen from the frame size
    range_guessed: bool = False

    # raw FFmpeg numbers, carried to the encoder unchanged (unknown stays unknown)
    matrix_id: int = 2
    range_id: int = 0
    primaries_id: int = 2
    transfer_id: int = 2

    @property
    def is_rgb(self) -> bool:
        return self.matrix == "rgb" or av.VideoFormat(self.pix_fmt).is_rgb

    @property
    def has_alpha(self) -> bool:
        """Whether the samples carry an alpha plane (ProRes 4444, FFV1 yuva, PNG RGBA, ...)."""
        try:
            return any(c.is_alpha for c in av.VideoFormat(self.pix_fmt).components)
        except ValueError:
            return False

    @property
    def working_format(self) -> str:
        """BGR at 8 bits for 8-bit sources, at 16 bits for anything deeper."""
        return "bgr48le" if self.bit_depth > 8 else "bgr24"

    @property
    def working_dtype(self) -> type:
        return np.uint16 if self.bit_depth > 8 else np.uint8

    @property
    def sws_matrix(self) -> str:
        return _SWS_MATRIX.get(self.matrix, "ITU709")

    @property
    def sws_range(self) -> str:
        return "JPEG" if self.range == "pc" else "MPEG"

    def describe(self) -> str:
        guessed = " (guessed)" if self.matrix_guessed else ""
        return (
            f"{self.pix_fmt}, {self.bit_depth}-bit, matrix {self.matrix}{guessed}, range {self.range}, "
            f"primaries {self.primaries}, transfer {self.transfer}"
        )


@overload
def to_8bit(samples: np.ndarray) -> np.ndarray: ...


@overload
def to_8bit(samples: torch.Tensor) -> torch.Tensor: ...


def to_8bit(samples: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Working samples as the 8 bits a detector or the restorer takes: the one 16→8-bit rule of the project.

    Sources above 8 bits are worked on at 16 bits per channel (``uint16`` on the host; ``int32`` on a torch
    device, which has no uint16 arithmetic). Eight-bit consumers get the top byte (``>> 8``): a truncation,
    so 65535 → 255 and 256 → 1, the same on the host and on the device. Eight-bit samples come back as they
    are (no copy).
    """
    if isinstance(samples, np.ndarray):
        if samples.dtype == np.uint8:
            return samples
        if samples.dtype != np.uint16:
            raise ValueError(f"expected uint8 or uint16 samples, got {samples.dtype}")
        return (samples >> 8).astype(np.uint8)
    import torch

    if samples.dtype == torch.uint8:
        return samples
    return torch.bitwise_right_shift(samples, 8).to(torch.uint8)


def pixel_bit_depth(pix_fmt: str) -> int:
    fmt = av.VideoFormat(pix_fmt)
    return max((c.bits for c in fmt.components), default=8)


def colour_info(
    pix_fmt: str, height: int, matrix_id: int, range_id: int, primaries_id: int, transfer_id: int
) -> ColourInfo:
    """Resolve a stream's colour description; unspecified values are guessed as players do.

    Guesses: RGB formats have no matrix; an untagged YUV stream is BT.709 when it is HD (720 lines or
    more), else BT.601 (SMPTE 170M); an untagged range is full for ``yuvj*`` formats, else limited.
    """
    is_rgb = av.VideoFormat(pix_fmt).is_rgb
    matrix_guessed = False
    if is_rgb:
        matrix = "rgb"
    elif matrix_id in _MATRIX_NAMES and matrix_id != 2:
        matrix = _MATRIX_NAMES[matrix_id]
    else:
        matrix = "bt709" if height >= 720 else "smpte170m"
        matrix_guessed = True
    range_guessed = False
    if range_id in (1, 2):
        rng = _RANGE_NAMES[range_id]
    else:
        rng = "pc" if pix_fmt.startswith("yuvj") or is_rgb else "tv"
        range_guessed = True
    return ColourInfo(
        pix_fmt=pix_fmt,
        bit_depth=pixel_bit_depth(pix_fmt),
        matrix=matrix,
        range=rng,
        primaries=_PRIMARIES_NAMES.get(primaries_id, "unknown"),
        transfer=_TRANSFER_NAMES.get(transfer_id, "unknown"),
        matrix_guessed=matrix_guessed,
        range_guessed=range_guessed,
        matrix_id=matrix_id,
        range_id=range_id,
        primaries_id=primaries_id,
        transfer_id=transfer_id,
    )


def colour_of_frame(frame: av.VideoFrame) -> ColourInfo:
    return colour_info(
        frame.format.name,
        frame.height,
        int(frame.colorspace),
        int(frame.color_range),
        int(frame.color_primaries),
        int(frame.color_trc),
    )


def to_working(frame: av.VideoFrame, colour: ColourInfo, rotation: int = 0) -> np.ndarray:
    """Decode samples to an upright BGR image (uint8, or uint16 above 8 bits) with the stream's matrix."""
    if colour.is_rgb:
        image = frame.to_ndarray(format=colour.working_format)
    else:
        converted = frame.reformat(
            format=colour.working_format,
            src_colorspace=colour.sws_matrix,
            dst_colorspace=colour.sws_matrix,
            src_color_range=colour.sws_range,
            dst_color_range="JPEG",
            interpolation="BILINEAR",
            threads=SWS_THREADS,
        )
        image = converted.to_ndarray()
    return rotate_image(image, rotation)


def from_working(image: np.ndarray, colour: ColourInfo, pix_fmt: str, rotation: int = 0) -> av.VideoFrame:
    """Convert an upright working image back to ``pix_fmt`` samples with the stream's matrix and range."""
    image = unrotate_image(image, rotation)
    fmt = "bgr48le" if image.dtype == np.uint16 else "bgr24"
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
    if av.VideoFormat(pix_fmt).is_rgb:
        out = rgb.reformat(format=pix_fmt, threads=SWS_THREADS)
    else:
        out = rgb.reformat(
            format=pix_fmt,
            src_colorspace=colour.sws_matrix,
            dst_colorspace=colour.sws_matrix,
            src_color_range="JPEG",
            dst_color_range=colour.sws_range,
            interpolation="BILINEAR",
            threads=SWS_THREADS,
        )
    tag_frame(out, colour)
    return out


def to_encoder_format(frame: av.VideoFrame, colour: ColourInfo, pix_fmt: str) -> av.VideoFrame:
    """Decoded samples in another pixel format (chroma/bit depth), keeping the stream's matrix and range."""
    if av.VideoFormat(pix_fmt).is_rgb or colour.is_rgb:
        return frame.reformat(format=pix_fmt, threads=SWS_THREADS)
    return frame.reformat(
        format=pix_fmt,
        src_colorspace=colour.sws_matrix,
        dst_colorspace=colour.sws_matrix,
        src_color_range=colour.sws_range,
        dst_color_range=colour.sws_range,
        threads=SWS_THREADS,
    )


def tag_frame(frame: av.VideoFrame, colour: ColourInfo) -> None:
    """Carry the source's colour tags (including 'unknown') onto a frame going to the encoder."""
    frame.colorspace = colour.matrix_id if colour.matrix_id in _MATRIX_NAMES else 2
    frame.color_range = colour.range_id
    frame.color_primaries = colour.primaries_id
    frame.color_trc = colour.transfer_id
