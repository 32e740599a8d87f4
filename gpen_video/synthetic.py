"""Synthetic clips with real faces moving along a known trajectory.

Used by ``samples/`` (the bundled sample), ``tests/`` and ``bench/``: no large media is committed.
The faces are the six in insightface's ``data/images/t1.jpg``; every frame is that photo warped by a
known similarity transform (sub-pixel pan and zoom; black pillarbox where the photo does not
cover the frame, as 4:3 film in a 16:9 frame), so tests can map detected landmarks back to the
photo and measure jitter against ground truth. A hard cut switches to a second "shot" (the photo
mirrored and framed differently), so the faces jump and tracks must restart.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from gpen_video.io.rotation import unrotate_image


def faces_image_path() -> Path:
    """Path of insightface's ``t1.jpg`` (six faces), shipped inside the insightface wheel."""
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the insightface package is not installed; pip install insightface")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / "t1.jpg"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the insightface package")
    return path


def faces_image() -> np.ndarray:
    """The six-face photo as a BGR uint8 array (886×1280)."""
    image = cv2.imread(str(faces_image_path()), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read {faces_image_path()}")
    return image


@dataclass(frozen=True)
class FaceScene:
    """A clip of the faces photo under a smooth pan/zoom, with optional degradation and cut.

    ``zoom`` is the photo's scale relative to "fit the frame height" at the first and last frame;
    ``pan`` is the photo-centre drift in frame pixels over the whole clip. ``cut_at`` starts the
    second shot at that frame index. ``faces=False`` renders a textured background with no face.
    """

    width: int = 640
    height: int = 360
    frames: int = 48
    zoom: tuple[float, float] = (1.0, 1.12)
    pan: tuple[float, float] = (23.7, -9.3)
    wobble: float = 0.0  # amplitude (px) of a sinusoidal hand-held shake added to the pan
    degrade: float = 0.0  # 0: clean; 1: noise sigma 6, blur, JPEG q 60 (fresh noise every frame)
    cut_at: int | None = None
    faces: bool = True
    faces_after_cut: bool = True  # False: the second shot is a faceless texture
    seed: int = 0
    photo_region: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) of the photo filmed; None: all


PHOTO_SIZE = (1280, 886)  # width, height of t1.jpg
TWO_FACES = (200, 60, 640, 480)  # a region of t1.jpg holding exactly two faces (a close two-shot)


@dataclass(frozen=True)
class SyntheticFrame:
    index: int
    image: np.ndarray  # BGR uint8 (height, width, 3)
    affine: np.ndarray  # 2×3 float64: photo (x, y, 1) -> frame (x, y); None-like zeros when no faces
    shot: int  # 0 before the cut, 1 after


def trajectory(scene: FaceScene, index: int) -> tuple[np.ndarray, int]:
    """The 2×3 similarity mapping photo coordinates to frame coordinates at ``index``, and the shot."""
    shot = 1 if scene.cut_at is not None and index >= scene.cut_at else 0
    t = index / max(scene.frames - 1, 1)
    x0, y0, x1, y1 = scene.photo_region or (0, 0, *PHOTO_SIZE)
    photo_h, photo_w = float(y1 - y0), float(x1 - x0)
    fit = scene.height / photo_h
    z0, z1 = scene.zoom
    scale = fit * (z0 + (z1 - z0) * t)
    dx = scene.pan[0] * t + scene.wobble * math.sin(2 * math.pi * index / 11.0)
    dy = scene.pan[1] * t + scene.wobble * math.cos(2 * math.pi * index / 7.0)
    if shot == 1:
        scale *= 1.35
        dx -= scene.width * 0.12
    a = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    # centre of the photo goes to the centre of the frame, plus the pan
    a[0, 2] = scene.width / 2 + dx - scale * photo_w / 2
    a[1, 2] = scene.height / 2 + dy - scale * photo_h / 2
    if shot == 1:  # mirrored second shot: x -> W - x after the warp
        a[0] = -a[0]
        a[0, 2] += scene.width
    a[:, 2] -= a[:, :2] @ np.array([x0, y0], np.float64)  # from the region's to the whole photo's coordinates
    return a, shot


def render(scene: FaceScene, index: int, photo: np.ndarray | None = None) -> SyntheticFrame:
    """Render frame ``index`` of ``scene`` (deterministic for a given scene and index)."""
    rng = np.random.default_rng(scene.seed * 100_003 + index)
    after_cut = scene.cut_at is not None and index >= scene.cut_at
    if not scene.faces or (after_cut and not scene.faces_after_cut):
        return SyntheticFrame(index, _texture(scene, index, rng), np.zeros((2, 3)), int(after_cut))
    photo = faces_image() if photo is None else photo
    affine, shot = trajectory(scene, index)
    filmed, region_affine = photo, affine
    if scene.photo_region is not None:  # only the region is filmed: the rest of the frame stays black
        x0, y0, x1, y1 = scene.photo_region
        filmed, region_affine = photo[y0:y1, x0:x1], affine.copy()
        region_affine[:, 2] += affine[:, :2] @ np.array([x0, y0], np.float64)
    image = cv2.warpAffine(
        filmed, region_affine, (scene.width, scene.height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT
    )
    if scene.degrade > 0:
        image = _degrade(image, scene.degrade, rng)
    return SyntheticFrame(index, image, affine, shot)


def frames(scene: FaceScene) -> Iterator[SyntheticFrame]:
    photo = faces_image() if scene.faces else None  # loaded once for the whole clip
    for index in range(scene.frames):
        yield render(scene, index, photo)


def _degrade(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    out = cv2.GaussianBlur(image, (0, 0), 0.3 + 0.9 * amount)
    noise = rng.normal(0.0, 6.0 * amount, image.shape)
    out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    quality = int(95 - 35 * amount)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else out


def _texture(scene: FaceScene, index: int, rng: np.random.Generator) -> np.ndarray:
    """A faceless frame: moving colour gradient with fine detail, so codecs have work to do."""
    yy, xx = np.mgrid[0 : scene.height, 0 : scene.width].astype(np.float32)
    phase = index * 0.15
    b = 128 + 100 * np.sin(xx / 37.0 + phase)
    g = 128 + 100 * np.sin(yy / 23.0 - phase)
    r = 128 + 90 * np.sin((xx + yy) / 51.0 + 2 * phase)
    image = np.stack([b, g, r], axis=-1) + rng.normal(0, 3, (scene.height, scene.width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Encoding synthetic clips to files


@dataclass(frozen=True)
class AudioTrack:
    codec: str = "aac"  # aac | pcm_s16le | pcm_s24le | flac | libopus ...
    rate: int = 48000
    layout: str = "stereo"
    frequency: float = 440.0  # a sine tone
    language: str | None = None


@dataclass(frozen=True)
class ClipSpec:
    """How to encode a FaceScene: codec, pixel format, timing, colour tags, audio tracks, rotation."""

    scene: FaceScene = field(default_factory=FaceScene)
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    rate: Fraction = Fraction(24)
    vfr: bool = False  # irregular frame durations (like a phone clip)
    time_base: Fraction | None = None  # default 1/(rate*1000) for VFR, else 1/rate
    colorspace: str = "ITU709"  # ITU709 | ITU601 | BT2020 (matrix used to make the YUV)
    color_range: str = "MPEG"  # MPEG (limited) | JPEG (full)
    rotation: int = 0  # display rotation tag (degrees); the scene is what the viewer sees upright
    audio: Sequence[AudioTrack] = (AudioTrack(),)
    codec_options: dict[str, str] = field(default_factory=dict)
    profile: str | None = None


_PRIMARIES = {"ITU709": 1, "ITU601": 6, "BT2020": 9}
_TRC = {"ITU709": 1, "ITU601": 6, "BT2020": 14}
_MATRIX = {"ITU709": 1, "ITU601": 6, "BT2020": 9}  # AVColorSpace numbers


def frame_times(spec: ClipSpec) -> list[int]:
    """Presentation timestamps (in ``stream_time_base(spec)`` units) of every frame."""
    tb = stream_time_base(spec)
    ticks_per_frame = 1 / (spec.rate * tb)
    pts, t = [], Fraction(0)
    rng = np.random.default_rng(7)
    for _ in range(spec.scene.frames):
        pts.append(round(t))
        step = ticks_per_frame * (Fraction(float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))) if spec.vfr else 1)
        t += step
    return pts


def stream_time_base(spec: ClipSpec) -> Fraction:
    if spec.time_base is not None:
        return spec.time_base
    return Fraction(1, int(spec.rate * 1000)) if spec.vfr else 1 / spec.rate


def write_clip(path: str | Path, spec: ClipSpec) -> Path:
    """Encode ``spec`` to ``path`` with PyAV (video from the scene, sine tones for audio)."""
    path = Path(path)
    scene = spec.scene
    pts_list = frame_times(spec)
    tb = stream_time_base(spec)
    # The scene is the upright picture; a rotated clip stores it turned back, as a phone's sensor does.
    stored_w, stored_h = (scene.height, scene.width) if spec.rotation % 180 else (scene.width, scene.height)
    with av.open(str(path), "w") as out:
        video = out.add_stream(spec.codec, rate=spec.rate, options=dict(spec.codec_options))
        video.width, video.height = stored_w, stored_h
        video.pix_fmt = spec.pix_fmt
        video.time_base = tb
        video.codec_context.time_base = tb
        if spec.profile:
            video.codec_context.profile = spec.profile
        cc = video.codec_context
        cc.colorspace = _MATRIX[spec.colorspace]
        cc.color_primaries = _PRIMARIES[spec.colorspace]
        cc.color_trc = _TRC[spec.colorspace]
        cc.color_range = 1 if spec.color_range == "MPEG" else 2
        if spec.rotation:
            video.set_display_rotation(spec.rotation)
        audio_streams = []
        for track in spec.audio:
            a = out.add_stream(track.codec, rate=track.rate, layout=track.layout)
            if track.language:
                a.metadata["language"] = track.language
            audio_streams.append(a)
        high_bit = av.VideoFormat(spec.pix_fmt).components[0].bits > 8
        for sframe, pts in zip(frames(scene), pts_list, strict=True):
            stored = unrotate_image(sframe.image, spec.rotation)
            if high_bit:
                rgb = av.VideoFrame.from_ndarray(stored.astype(np.uint16) * 257, format="bgr48le")
            else:
                rgb = av.VideoFrame.from_ndarray(stored, format="bgr24")
            frame = rgb.reformat(
                format=spec.pix_fmt,
                src_colorspace="ITU709",
                dst_colorspace=spec.colorspace,
                src_color_range="JPEG",
                dst_color_range=spec.color_range,
            )
            frame.pts = pts
            frame.time_base = tb
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        end_seconds = float((pts_list[-1] + (1 / (spec.rate * tb))) * tb) if pts_list else 0.0
        for a, track in zip(audio_streams, spec.audio, strict=True):
            _write_tone(out, a, track, end_seconds)
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.AudioStream, track: AudioTrack, seconds: float) -> None:
    channels = stream.codec_context.layout.nb_channels
    fmt = stream.codec_context.format.name
    chunk = 1024
    total = round(seconds * track.rate)
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = (np.arange(start, start + n) / track.rate).astype(np.float64)
        tone = 0.25 * np.sin(2 * np.pi * track.frequency * t)
        planar = av.AudioFormat(fmt).is_planar
        samples = _to_sample_format(tone, fmt, channels, planar)
        frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout=track.layout)
        frame.sample_rate = track.rate
        frame.pts = start
        frame.time_base = Fraction(1, track.rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _to_sample_format(tone: np.ndarray, fmt: str, channels: int, planar: bool) -> np.ndarray:
    base = fmt.rstrip("p")
    if base == "flt":
        data = tone.astype(np.float32)
    elif base == "dbl":
        data = tone
    elif base == "s16":
        data = (tone * 32767).astype(np.int16)
    elif base == "s32":
        data = (tone * 2147483647).astype(np.int32)
    else:
        raise ValueError(f"unsupported sample format {fmt}")
    stacked = np.stack([data] * channels)  # (channels, n)
    return stacked if planar else stacked.T.reshape(1, -1)
