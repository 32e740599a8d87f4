"""Which encoder, pixel format and settings the output gets.

``auto`` follows what a finishing house expects: intermediate and lossless sources (ProRes, DNxHD/HR,
FFV1, rawvideo, v210, MJPEG, DV, ...) come back in the same codec family, profile and pixel format
(alpha and 12 bits kept where the encoder has them); 8-bit delivery codecs become libx264 CRF 16
(preset slow; a preset file or --crf/--preset can say otherwise) with the source's chroma layout; deeper
delivery codecs become 10-bit libx265 (HDR10
metadata passed to x265). Given the output container (``ContainerCaps``), ``auto`` only picks what
FFmpeg says the container holds and times correctly: no B-frames where presentation order is not
stored (AVI, MXF, ...), the muxer's own default codec where it holds neither (VP9 for WebM, MPEG-2
for MPEG-PS and MXF, DV for .dv). Anything the user names explicitly wins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

import av

from gpen_video.config import OutputConfig
from gpen_video.errors import ConfigError
from gpen_video.io.containers import MUXER_CODEC_FAMILIES
from gpen_video.io.formats import ContainerCaps
from gpen_video.io.probe import MediaInfo, VideoInfo

log = logging.getLogger(__name__)

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
    "mjpeg": "mjpeg",
    "dvvideo": "dvvideo",
}
# intermediates whose loss of depth, alpha or fields to H.264/HEVC would be silent: into Matroska they become FFV1
_MASTER_FAMILIES = ("prores_ks", "dnxhd", "rawvideo", "v210", "huffyuv", "ffvhuff", "utvideo", "png", "qtrle")
_X26X = ("libx264", "libx265")
_PRORES_PROFILES = {"Proxy": "proxy", "LT": "lt", "Standard": "standard", "HQ": "hq", "4444": "4444", "XQ": "4444xq"}
_DNX_PROFILES = {"DNXHD": "dnxhd", "DNXHR LB": "dnxhr_lb", "DNXHR SQ": "dnxhr_sq", "DNXHR HQ": "dnxhr_hq",
                 "DNXHR HQX": "dnxhr_hqx", "DNXHR 444": "dnxhr_444"}  # fmt: skip


@dataclass
class EncodeSettings:
    codec: str  # encoder name
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)
    bit_rate: int | None = None
    reason: str = ""
    notice: str = ""  # what the run must say about this choice, even with -q (an intermediate changed family)

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


def choose_encoding(
    video: VideoInfo, config: OutputConfig, encoders: EncoderCatalog = PYAV_ENCODERS, caps: ContainerCaps | None = None
) -> EncodeSettings:
    """Pick the encoder for ``video`` under the user's ``config`` (codec, crf, preset, pix_fmt), for the output
    container ``caps`` when known (what it holds and whether it times B-frames)."""
    if config.video_codec == "auto":
        settings = _auto(video, encoders, caps)
    else:
        settings = _named(video, config.video_codec, encoders, caps)
    if config.pix_fmt != "auto":
        _force_pix_fmt(settings, config.pix_fmt, encoders)
    _rate_control(settings, config)
    if settings.codec == "libx265":
        settings.options["x265-params"] = _x265_params(settings.options.get("x265-params"), video)
    return settings


def _named(video: VideoInfo, name: str, encoders: EncoderCatalog, caps: ContainerCaps | None) -> EncodeSettings:
    """The encoder given with ``--video-codec``, in the pixel format nearest the source's."""
    codec = _encoder_name(name, encoders)
    if not encoders.has(codec):
        hint = "" if encoders is not PYAV_ENCODERS else "; try --encoder-backend ffmpeg to use your own ffmpeg"
        raise ConfigError(f"--video-codec: {encoders.name} has no encoder '{name}'{hint}")
    fmt = _closest_format(encoders.formats(codec), video.colour.pix_fmt, alpha=video.colour.has_alpha)
    settings = EncodeSettings(codec, fmt, reason="chosen with --video-codec")
    if codec in INTERMEDIATE_ENCODERS.values():
        _intermediate_options(settings, video)
    if caps is not None and not caps.reorders and codec in _X26X:
        settings.options["bf"] = "0"
    return settings


def _force_pix_fmt(settings: EncodeSettings, pix_fmt: str, encoders: EncoderCatalog) -> None:
    """``--pix-fmt``, where the encoder takes it."""
    formats = encoders.formats(settings.codec)
    try:
        av.VideoFormat(pix_fmt)
    except ValueError as exc:
        raise ConfigError(f"--pix-fmt: unknown pixel format '{pix_fmt}'") from exc
    if formats and pix_fmt not in formats:
        raise ConfigError(f"--pix-fmt: {settings.codec} cannot encode {pix_fmt}; it takes {', '.join(formats)}")
    settings.pix_fmt = pix_fmt


def _rate_control(settings: EncodeSettings, config: OutputConfig) -> None:
    """``--crf`` and ``--preset`` where the encoder has them; x264/x265 get the preset file's defaults otherwise."""
    if config.crf is not None:
        if settings.codec not in ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "libaom-av1"):
            raise ConfigError(f"--crf applies to x264/x265/AV1/VP9 encoders, not {settings.codec}")
        settings.options["crf"] = str(config.crf)
    elif settings.codec in _X26X:  # a preset file's x264/x265 default, not an explicit choice
        settings.options["crf"] = str(config.x26x_crf)
    if config.preset is not None:  # None: not given on the command line
        if settings.codec not in _X26X:
            raise ConfigError(
                f"--preset applies to x264/x265, not to {settings.codec} ({settings.reason}); "
                f"drop --preset {config.preset}, or choose --video-codec libx264 or libx265"
            )
        settings.options["preset"] = config.preset
    elif settings.codec in _X26X:
        settings.options["preset"] = config.x26x_preset


def _encoder_name(name: str, encoders: EncoderCatalog) -> str:
    """``h264`` -> ``libx264``, ``hevc`` -> ``libx265``: the encoder FFmpeg picks for a codec's short name."""
    if encoders is not PYAV_ENCODERS or (encoders.has(name) and name not in ("h264", "hevc", "av1", "vp9")):
        return {"h264": "libx264", "hevc": "libx265", "h265": "libx265"}.get(name, name)
    try:
        return av.codec.Codec({"h265": "hevc"}.get(name, name), "w").name
    except (ValueError, av.error.FFmpegError):
        return name


def _x265_params(given: str | None, video: VideoInfo) -> str:
    params = [p for p in (given or "").split(":") if p]
    keys = {p.split("=")[0] for p in params}
    if "log-level" not in keys:
        params.insert(0, "log-level=error")
    meta = video.metadata
    if meta.mastering_display is not None and "master-display" not in keys:
        params.append(f"master-display={meta.mastering_display.x265()}")
    if meta.content_light is not None and "max-cll" not in keys:
        params.append(f"max-cll={meta.content_light.max_cll},{meta.content_light.max_fall}")
    if meta.is_hdr10 and "hdr10" not in keys:
        params.append("hdr10=1")
    return ":".join(params)


def _intermediate_options(settings: EncodeSettings, video: VideoInfo) -> None:
    family = settings.codec
    if family == "prores_ks":
        profile = _PRORES_PROFILES.get(video.profile or "", "hq")
        if video.colour.has_alpha or "444" in settings.pix_fmt:
            profile = profile if profile in ("4444", "4444xq") else "4444"
        settings.options["profile"] = profile
        settings.options["vendor"] = "apl0"
        if video.colour.has_alpha:
            settings.options["alpha_bits"] = "16"
    elif family == "dnxhd":
        profile = _DNX_PROFILES.get(video.profile or "", "dnxhr_hq")
        settings.options["profile"] = profile
        if profile == "dnxhd":  # fixed-rate DNxHD needs a bit rate that names its CID
            settings.bit_rate = _dnxhd_bit_rate(video)
    elif family == "ffv1":
        settings.options.update({"level": "3", "slicecrc": "1", "g": "1"})
    elif family in ("mjpeg", "mpeg2video"):
        settings.bit_rate = video.bit_rate * 2 if video.bit_rate else _intra_bit_rate(video)


_PRORES_ALPHA_BITS = {1: 8, 2: 16}  # the frame header's alpha_channel_type -> bits a sample


def source_alpha_bits(info: MediaInfo) -> int | None:
    """The alpha depth a ProRes 4444 source was coded with (8 or 16 bits), from its first frame header: re-coding
    8-bit alpha at 16 bits changes its levels (the decoder widens 8 bits as v*257/16, not v*16)."""
    if info.video.codec != "prores" or not info.video.colour.has_alpha:
        return None
    try:
        with av.open(str(info.path)) as container:
            for packet in container.demux(container.streams[info.video.index]):
                header = bytes(packet)
                if len(header) > 25 and header[4:8] == b"icpf":
                    return _PRORES_ALPHA_BITS.get(header[25] & 0x0F)
                if packet.size:
                    return None
    except (av.error.FFmpegError, OSError, IndexError):
        return None
    return None


def frame_rate(video: VideoInfo) -> Fraction | None:
    """The stream's frame rate, or the one its frames show where the header's is absurd (DV says 60000 fps)."""
    rate = Fraction(video.frame_rate) if video.frame_rate else None
    if video.frame_count > 1 and video.duration > 0:
        measured = Fraction(video.frame_count) / Fraction(video.duration).limit_denominator(100000)
        if rate is None or abs(rate - measured) > measured / 2:
            return measured.limit_denominator(1001)
    return rate


def _intra_bit_rate(video: VideoInfo) -> int:
    rate = float(frame_rate(video) or 25)
    return int(video.width * video.height * rate * 2)  # ~2 bits a pixel: near-transparent intra coding


_DNXHD_RATES_MBPS = (36, 45, 60, 75, 90, 110, 115, 120, 145, 175, 180, 185, 220, 240, 290, 365, 440)


def _dnxhd_bit_rate(video: VideoInfo) -> int | None:
    """A bit rate naming a DNxHD CID for this picture: the source's when FFmpeg takes it, else the valid rate
    nearest it (the highest valid one when the source's is unknown), found by opening the encoder."""
    valid = [r * 1_000_000 for r in _DNXHD_RATES_MBPS if _dnxhd_opens(video, r * 1_000_000)]
    if video.bit_rate and (not valid or _dnxhd_opens(video, video.bit_rate)):
        return video.bit_rate
    if not valid:
        return video.bit_rate
    if not video.bit_rate:
        return valid[-1]
    return min(valid, key=lambda r: abs(r - video.bit_rate))


def _dnxhd_opens(video: VideoInfo, bit_rate: int) -> bool:
    ctx = av.CodecContext.create("dnxhd", "w")
    ctx.width, ctx.height = video.width, video.height
    ctx.pix_fmt = video.colour.pix_fmt if video.colour.pix_fmt in ("yuv422p", "yuv422p10le") else "yuv422p"
    ctx.time_base = 1 / Fraction(video.frame_rate or 25)
    ctx.framerate = Fraction(video.frame_rate or 25)
    ctx.bit_rate = bit_rate
    ctx.options = {"profile": "dnxhd"}
    try:
        ctx.open()
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def _auto(video: VideoInfo, encoders: EncoderCatalog, caps: ContainerCaps | None = None) -> EncodeSettings:
    src_fmt = video.colour.pix_fmt
    alpha = video.colour.has_alpha
    family = INTERMEDIATE_ENCODERS.get(video.codec)
    if family and encoders.has(family) and (caps is None or caps.holds(family)):
        formats = encoders.formats(family)
        fmt = src_fmt if not formats or src_fmt in formats else _closest_format(formats, src_fmt, alpha=alpha)
        settings = EncodeSettings(family, fmt, reason=f"same family as the {video.codec} source")
        _intermediate_options(settings, video)
        return settings
    if family in _MASTER_FAMILIES and caps is not None and caps.family == "matroska" and encoders.has("ffv1"):
        return _lossless_instead(video, family, encoders, caps)
    if caps is not None:
        delivery = "libx265" if video.colour.bit_depth > 8 else "libx264"
        # the muxer's own codec where H.264/HEVC cannot be timed or held
        if not caps.holds(delivery) or caps.family in MUXER_CODEC_FAMILIES:
            return _container_default(video, encoders, caps)
    if video.colour.bit_depth > 8:
        settings = EncodeSettings(
            "libx265",
            _closest_format(encoders.formats("libx265"), src_fmt, depth=10),
            reason=f"{video.colour.bit_depth}-bit {video.codec} source: 10-bit HEVC",
        )
    else:
        settings = EncodeSettings(
            "libx264",
            _closest_format(encoders.formats("libx264"), src_fmt, depth=8),
            reason=f"8-bit {video.codec} source: H.264",
        )
    if caps is not None and not caps.reorders:
        settings.options["bf"] = "0"
        settings.reason += f", no B-frames ({caps.format_name} stores no presentation order)"
    return settings


def _lossless_instead(video: VideoInfo, family: str, encoders: EncoderCatalog, caps: ContainerCaps) -> EncodeSettings:
    """FFV1 for an intermediate source whose own codec the output container cannot hold (DNxHR or v210 into
    Matroska): lossless, and it keeps the depth, the alpha and the fields, where H.264/HEVC would keep none."""
    fmt = _closest_format(encoders.formats("ffv1"), video.colour.pix_fmt, alpha=video.colour.has_alpha)
    why = f"{family} video cannot go in {caps.format_name}: FFV1 (lossless) instead"
    settings = EncodeSettings("ffv1", fmt, reason=why, notice=f"{why}; write .mov or .mxf to keep {family}")
    _intermediate_options(settings, video)
    return settings


def _container_default(video: VideoInfo, encoders: EncoderCatalog, caps: ContainerCaps) -> EncodeSettings:
    """The output muxer's own default video codec (VP9 for WebM, MPEG-2 for MPEG-PS/MXF, DV for .dv)."""
    name = {"mpeg1video": "mpeg2video"}.get(caps.default_video, caps.default_video)
    for candidate in (f"lib{name}", f"libvpx-{name}", name):
        try:
            codec = av.codec.Codec(candidate, "w").name
        except (ValueError, av.error.FFmpegError):
            continue
        if encoders.has(codec):
            break
    else:
        raise ConfigError(f"{caps.format_name}: no encoder here for its {name} video; choose another output type")
    fmt = _closest_format(encoders.formats(codec), video.colour.pix_fmt, depth=min(video.colour.bit_depth, 10))
    settings = EncodeSettings(codec, fmt, reason=f"{caps.format_name} output: {codec}, its muxer's default")
    if codec == "libvpx-vp9":
        settings.options.update({"crf": "20", "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"})
    elif codec in ("mpeg2video", "mjpeg", "mpeg4"):
        settings.bit_rate = video.bit_rate * 2 if video.bit_rate else _intra_bit_rate(video)
        settings.options["bf"] = "0"
    elif codec in ("libaom-av1", "libsvtav1"):
        settings.options.update({"crf": "24"})
    return settings


def _closest_format(formats: list[str], src_fmt: str, depth: int | None = None, alpha: bool = False) -> str:
    """The encoder's format nearest the source: same alpha, same chroma subsampling, then the wanted bit depth."""
    if not formats or (src_fmt in formats and depth in (None, _depth(src_fmt))):
        return src_fmt
    want_depth = depth or _depth(src_fmt)
    chroma = _chroma_shift(src_fmt)

    def score(name: str) -> tuple[int, int, int, int]:
        f = av.VideoFormat(name)
        if f.is_rgb or len(f.components) < 3 or name.startswith(("yuvj", "nv")):
            return (9, 9, 9, 9)
        has_alpha = any(c.is_alpha for c in f.components)
        deficit = max(want_depth - _depth(name), 0)
        return (int(has_alpha != alpha), 0 if _chroma_shift(name) == chroma else 1, deficit * 2 +
                int(_depth(name) > want_depth), abs(_depth(name) - want_depth))  # fmt: skip

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
