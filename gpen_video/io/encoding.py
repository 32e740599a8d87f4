"""Which encoder, pixel format and settings the output gets.

``auto`` follows what a finishing house expects: intermediate and lossless sources (ProRes, DNxHD/HR,
FFV1, rawvideo, v210, ...) come back in the same codec family, profile and pixel format; 8-bit delivery
codecs become libx264 CRF 16 (preset slow) with the source's chroma layout; deeper delivery codecs
become 10-bit libx265. Anything the user names explicitly wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import av

from gpen_video.config import OutputConfig
from gpen_video.errors import ConfigError
from gpen_video.io.probe import VideoInfo

# decoder name -> encoder name, for codecs kept in their own family by `auto`
INTERMEDIATE_ENCODERS = {
    "prores": "prores_ks",
    "dnxhd": "dnxhd",
    "ffv1": "ffv1",
    "rawvideo": "rawvideo",
    "v210": "v210",
    "huffyuv": "huffyuv",
    "ffvhuff": "ffvhuff",
    "utvideo": "utvideo",
    "png": "png",
    "qtrle": "qtrle",
}
_PRORES_PROFILES = {"Proxy": "proxy", "LT": "lt", "Standard": "standard", "HQ": "hq", "4444": "4444", "XQ": "4444xq"}
_DNX_PROFILES = {"DNXHD": "dnxhd", "DNXHR LB": "dnxhr_lb", "DNXHR SQ": "dnxhr_sq", "DNXHR HQ": "dnxhr_hq",
                 "DNXHR HQX": "dnxhr_hqx", "DNXHR 444": "dnxhr_444"}  # fmt: skip
_DELIVERY_DEFAULTS = {"libx264": {"crf": 16, "preset": "slow"}, "libx265": {"crf": 16, "preset": "slow"}}


@dataclass
class EncodeSettings:
    codec: str  # encoder name
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)
    bit_rate: int | None = None
    reason: str = ""

    def describe(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.codec} {self.pix_fmt} {opts}".strip()


class EncoderCatalog(Protocol):
    """Which encoders exist and which pixel formats each takes (PyAV's FFmpeg, or the user's binary)."""

    name: str

    def has(self, codec: str) -> bool: ...

    def formats(self, codec: str) -> list[str]: ...


class PyAVEncoders:
    name = "PyAV's FFmpeg"

    def has(self, codec: str) -> bool:
        try:
            av.codec.Codec(codec, "w")
        except (ValueError, av.error.FFmpegError):
            return False
        return True

    def formats(self, codec: str) -> list[str]:
        return [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]


PYAV_ENCODERS = PyAVEncoders()


def choose_encoding(video: VideoInfo, config: OutputConfig, encoders: EncoderCatalog = PYAV_ENCODERS) -> EncodeSettings:
    """Pick the encoder for ``video`` under the user's ``config`` (codec, crf, preset, pix_fmt)."""
    src_fmt = video.colour.pix_fmt
    if config.video_codec == "auto":
        settings = _auto(video, encoders)
    else:
        codec = config.video_codec
        if not encoders.has(codec):
            hint = "" if encoders is not PYAV_ENCODERS else "; try --encoder-backend ffmpeg to use your own ffmpeg"
            raise ConfigError(f"--video-codec: {encoders.name} has no encoder '{codec}'{hint}")
        fmt = _closest_format(encoders.formats(codec), src_fmt)
        settings = EncodeSettings(codec, fmt, reason="chosen with --video-codec")
        if codec in _DELIVERY_DEFAULTS:
            settings.options = {k: str(v) for k, v in _DELIVERY_DEFAULTS[codec].items()}
    if config.pix_fmt != "auto":
        formats = encoders.formats(settings.codec)
        try:
            av.VideoFormat(config.pix_fmt)
        except ValueError as exc:
            raise ConfigError(f"--pix-fmt: unknown pixel format '{config.pix_fmt}'") from exc
        if formats and config.pix_fmt not in formats:
            raise ConfigError(
                f"--pix-fmt: {settings.codec} cannot encode {config.pix_fmt}; it takes {', '.join(formats)}"
            )
        settings.pix_fmt = config.pix_fmt
    if config.crf is not None:
        if settings.codec not in ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "libaom-av1"):
            raise ConfigError(f"--crf applies to x264/x265/AV1/VP9 encoders, not {settings.codec}")
        if not 0 <= config.crf <= 63:
            raise ConfigError(f"--crf must be between 0 and 51 (63 for AV1), got {config.crf}")
        settings.options["crf"] = str(config.crf)
    if config.preset is not None:
        if settings.codec not in ("libx264", "libx265", "libsvtav1"):
            raise ConfigError(f"--preset applies to x264/x265/SVT-AV1, not {settings.codec}")
        settings.options["preset"] = config.preset
    if settings.codec == "libx265":
        settings.options.setdefault("x265-params", "log-level=error")
    return settings


def _auto(video: VideoInfo, encoders: EncoderCatalog) -> EncodeSettings:
    src_fmt = video.colour.pix_fmt
    family = INTERMEDIATE_ENCODERS.get(video.codec)
    if family and encoders.has(family) and (not encoders.formats(family) or src_fmt in encoders.formats(family)):
        settings = EncodeSettings(family, src_fmt, reason=f"same family as the {video.codec} source")
        if family == "prores_ks":
            settings.options["profile"] = _PRORES_PROFILES.get(video.profile or "", "hq")
            settings.options["vendor"] = "apl0"
        elif family == "dnxhd":
            profile = _DNX_PROFILES.get(video.profile or "", "dnxhr_hq")
            settings.options["profile"] = profile
            if profile == "dnxhd":  # fixed-rate DNxHD needs the source's bit rate to pick its CID
                settings.bit_rate = video.bit_rate
        elif family == "ffv1":
            settings.options.update({"level": "3", "slicecrc": "1", "g": "1"})
        return settings
    if video.colour.bit_depth > 8:
        return EncodeSettings(
            "libx265",
            _closest_format(encoders.formats("libx265"), src_fmt, depth=10),
            {k: str(v) for k, v in _DELIVERY_DEFAULTS["libx265"].items()},
            reason=f"{video.colour.bit_depth}-bit {video.codec} source: 10-bit HEVC",
        )
    return EncodeSettings(
        "libx264",
        _closest_format(encoders.formats("libx264"), src_fmt, depth=8),
        {k: str(v) for k, v in _DELIVERY_DEFAULTS["libx264"].items()},
        reason=f"8-bit {video.codec} source: H.264 CRF 16",
    )


def _closest_format(formats: list[str], src_fmt: str, depth: int | None = None) -> str:
    """The encoder's format nearest the source: same chroma subsampling, then the wanted bit depth."""
    if not formats or (src_fmt in formats and depth in (None, _depth(src_fmt))):
        return src_fmt
    want_depth = depth or _depth(src_fmt)
    chroma = _chroma_shift(src_fmt)

    def score(name: str) -> tuple[int, int, int]:
        f = av.VideoFormat(name)
        if f.is_rgb or len(f.components) < 3 or name.startswith(("yuvj", "nv")):
            return (9, 9, 9)
        has_alpha = any(c.is_alpha for c in f.components)
        return (0 if _chroma_shift(name) == chroma else 1, abs(_depth(name) - want_depth), int(has_alpha))

    return min(formats, key=score)


def _chroma_shift(pix_fmt: str) -> tuple[int, int]:
    """Chroma subsampling of a format as (horizontal, vertical) halvings; RGB and gray count as none."""
    fmt = av.VideoFormat(pix_fmt, 16, 16)
    if fmt.is_rgb or len(fmt.components) < 3:
        return (0, 0)
    luma, chroma = fmt.components[0], fmt.components[1]
    return (int(chroma.width < luma.width), int(chroma.height < luma.height))


def _depth(pix_fmt: str) -> int:
    return max((c.bits for c in av.VideoFormat(pix_fmt).components), default=8)
