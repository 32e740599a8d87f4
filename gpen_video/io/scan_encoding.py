"""The encoder a film scan (an image sequence) gets when ``-o`` names a video file.

``auto`` for a video source keeps its codec family or picks a delivery codec (``io.encoding``); for a scan that
would be 10-bit HEVC 4:4:4, which editing software does not open. Into a QuickTime ``.mov`` a scan becomes the
intermediate editors open: ProRes 4444 (``prores_ks``, Y'CbCr 4:4:4 10-bit, alpha kept as ProRes 4444's alpha)
for a 10-bit or deeper scan or one with alpha, ProRes 422 HQ (4:2:2 10-bit) for an 8-bit one. An RGB scan is
written with the BT.709 matrix in limited range, so tagged (``yuv_colour``). Other containers, or a codec,
``--crf`` or ``--preset`` named by the user, go the video way.
"""

from __future__ import annotations

import dataclasses

import av

from gpen_video.config import OutputConfig
from gpen_video.io.colour import ColourInfo
from gpen_video.io.encoding import PYAV_ENCODERS, EncodeSettings, choose_encoding
from gpen_video.io.formats import ContainerCaps
from gpen_video.io.probe import VideoInfo

SCAN_INTERMEDIATE_FAMILIES = ("mov",)  # where editors expect ProRes
PRORES = "prores_ks"
_BT709, _LIMITED = 1, 1  # FFmpeg's AVCOL_SPC_BT709, AVCOL_RANGE_MPEG


def scan_encoding(video: VideoInfo, config: OutputConfig, caps: ContainerCaps) -> EncodeSettings:
    """The encode settings for a scan sequence going into the container ``caps``."""
    chosen_by_user = config.video_codec != "auto" or config.crf is not None or config.preset is not None
    if chosen_by_user or caps.family not in SCAN_INTERMEDIATE_FAMILIES or not PYAV_ENCODERS.has(PRORES):
        return choose_encoding(video, config, PYAV_ENCODERS, caps)
    settings = choose_encoding(video, dataclasses.replace(config, video_codec=PRORES), PYAV_ENCODERS, caps)
    colour = video.colour
    deep = colour.bit_depth > 8 or colour.has_alpha
    if config.pix_fmt == "auto":
        settings.pix_fmt = "yuva444p10le" if colour.has_alpha else "yuv444p10le" if deep else "yuv422p10le"
    settings.options["profile"] = "4444" if "444" in settings.pix_fmt else "hq"
    name = "ProRes 4444" if settings.options["profile"] == "4444" else "ProRes 422 HQ"
    why = "a 10-bit or deeper" if colour.bit_depth > 8 else "an 8-bit"
    alpha = " with alpha" if colour.has_alpha else ""
    settings.reason = f"{why} scan{alpha} into {caps.family.upper()}: {name}, the intermediate editors open"
    if colour.bit_depth > 10:
        settings.reason += f" ({colour.bit_depth}-bit samples rounded to ProRes' 10-bit input)"
    return settings


def yuv_colour(colour: ColourInfo, pix_fmt: str) -> ColourInfo:
    """``colour`` as the encoder's Y'CbCr samples carry it: an RGB scan's as BT.709 in limited range (the matrix
    and range the writer converts with and tags); a Y'CbCr source's unchanged."""
    if not colour.is_rgb or av.VideoFormat(pix_fmt).is_rgb:
        return colour
    return dataclasses.replace(colour, pix_fmt=pix_fmt, matrix="bt709", matrix_id=_BT709, range="tv", range_id=_LIMITED,
                               matrix_guessed=False)  # fmt: skip
