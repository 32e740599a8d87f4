"""Decoding on the GPU (NVDEC, through PyAV's hardware acceleration), or why not.

A CUDA run decodes its video with NVDEC where FFmpeg has a CUDA decoder for the codec (H.264, HEVC, VP9, AV1,
MPEG-2 ...) and a CUDA device opens; anything else decodes on the CPU, said in one logged line. NVDEC is a
conforming decoder, so its pictures are the software decoder's; PyAV copies each to host memory, in NVDEC's own
layout (NV12, P010), which ``to_stream_format`` turns back into the stream's (a plane shuffle or a shift, exact),
so every stage after the reader sees the frames a CPU decode gives.
"""

from __future__ import annotations

import logging

import av
import numpy as np
from av.codec.hwaccel import HWAccel

from gpen_video.io.colour import SWS_THREADS

log = logging.getLogger(__name__)


def choose_decode(codec: str, nvdec: bool, gpu: int | None = None) -> HWAccel | None:
    """NVDEC for ``codec`` (the stream's decoder name) on CUDA device ``gpu`` (None: the current one) where ``nvdec``
    asks for it and it can be had; None: the CPU decodes (why, when NVDEC was asked for, logged in one line)."""
    if not nvdec:
        return None
    accel = HWAccel("cuda", device=None if gpu is None else str(gpu), allow_software_fallback=True)
    try:
        accel.create(av.Codec(codec, "r"))  # opens the device: a machine without one fails here, not mid-run
    except NotImplementedError:
        reason = f"NVDEC has no decoder for {codec}"
    except (OSError, ValueError, av.error.FFmpegError) as exc:
        reason = f"no CUDA device opens for NVDEC ({getattr(exc, 'strerror', None) or exc})"
    else:
        log.info("decoding %s with NVDEC on cuda:%s", codec, 0 if gpu is None else gpu)
        return accel
    log.warning("%s: decoding on the CPU", reason)
    return None


def to_stream_format(frame: av.VideoFrame, pix_fmt: str) -> av.VideoFrame:
    """``frame`` in the stream's pixel format ``pix_fmt``, with its timing and colour tags; a frame already in it is
    returned as it is.

    A hardware decoder hands its pictures in a semi-planar layout (NV12, P010, P016: luma, then one plane of U and V
    interleaved, high bits used), which is moved here sample for sample into the stream's planar one. swscale is no
    use for it: its P010 to yuv420p10le conversion changes chroma samples (8 of a 176x144 frame's, 512 for 360).
    A layout that is not one of these is left to swscale."""
    if frame.format.name == pix_fmt:
        return frame
    target = av.VideoFormat(pix_fmt, frame.width, frame.height)
    samples = _planes_of(frame, target)
    if samples is None:
        converted = frame.reformat(format=pix_fmt, threads=SWS_THREADS)
    else:
        converted = av.VideoFrame(frame.width, frame.height, pix_fmt)
        for plane, values in zip(converted.planes, samples, strict=True):
            row = plane.line_size // values.itemsize
            np.frombuffer(plane, values.dtype).reshape(plane.height, row)[:, : values.shape[1]] = values
    converted.pts, converted.time_base = frame.pts, frame.time_base
    converted.colorspace, converted.color_range = frame.colorspace, frame.color_range
    converted.color_primaries, converted.color_trc = frame.color_primaries, frame.color_trc
    return converted


def _planes_of(frame: av.VideoFrame, target: av.VideoFormat) -> list[np.ndarray] | None:
    """``frame``'s samples as ``target``'s planes (Y, U, V), shifted down to the target's depth; None where the two
    layouts do not match sample for sample (another subsampling, alpha, RGB, low-bit wide samples).

    Wide samples are taken as FFmpeg's hardware layouts hold them, in a sample's high bits: the semi-planar P010,
    P016 and P210, and 16-bit planar (NVDEC's 4:4:4 above 8 bits)."""
    source = frame.format
    if source.is_rgb or target.is_rgb or len(target.components) != 3 or len(source.components) != 3:
        return None
    bits = max(c.bits for c in source.components)
    depth = max(c.bits for c in target.components)
    semi_planar = len(frame.planes) == 2
    if (bits > 8) != (depth > 8) or (8 < bits < 16 and not semi_planar):
        return None
    dtype = np.dtype("<u2") if bits > 8 else np.dtype(np.uint8)
    shift = 16 - depth if bits > 8 else 0
    if semi_planar:  # U and V interleaved in the second plane
        luma, chroma = _samples(frame.planes[0], dtype, 1), _samples(frame.planes[1], dtype, 2)
        planes = [luma, chroma[:, 0::2], chroma[:, 1::2]]
    else:
        planes = [_samples(plane, dtype, 1) for plane in frame.planes]
    if len(planes) != 3 or any(
        values.shape != (c.height, c.width) for values, c in zip(planes, target.components, strict=True)
    ):
        return None
    return [values >> shift if shift else values for values in planes]


def _samples(plane: av.video.plane.VideoPlane, dtype: np.dtype, components: int) -> np.ndarray:
    """A plane's visible samples, ``components`` interleaved in it, the row padding left out."""
    row = plane.line_size // dtype.itemsize
    return np.frombuffer(plane, dtype).reshape(plane.height, row)[:, : plane.width * components]
