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
    #: camera path: ``linear`` (pan/zoom/wobble above) or one of the stability bench's known motions:
    #: ``sway`` (±15/±10 px sines, ~1 s periods, ±4 % breathing zoom), ``shake`` (random walk, 3 px a frame),
    #: ``pan`` (20 px a frame), ``zoomin`` (1.5× over 48 frames), ``roll`` (±10° about a face)
    path: str = "linear"


PHOTO_SIZE = (1280, 886)  # width, height of t1.jpg
TWO_FACES = (200, 60, 640, 480)  # a region of t1.jpg holding exactly two faces (a close two-shot)


@dataclass(frozen=True)
class SyntheticFrame:
    index: int
    image: np.ndarray  # BGR uint8 (height, width, 3)
    affine: np.ndarray  # 2×3 float64: photo (x, y, 1) -> frame (x, y); None-like zeros when no faces
    shot: int  # 0 before the cut, 1 after


PATHS = ("linear", "sway", "shake", "pan", "zoomin", "roll")
_ROLL_PIVOT = (512.0, 352.0)  # photo point the roll turns about (face 2 of t1.jpg)


def _path_similarity(scene: FaceScene, index: int) -> np.ndarray:
    """Photo → frame similarity of the bench's known motions (``scene.path`` other than ``linear``)."""
    fit = scene.height / float(PHOTO_SIZE[1])
    zoom = scene.zoom[0]
    angle, dx, dy = 0.0, 0.0, 0.0
    pivot = np.array([PHOTO_SIZE[0] / 2.0, PHOTO_SIZE[1] / 2.0])
    if scene.path == "sway":
        dx = 15.0 * math.sin(2 * math.pi * index / 24.0)
        dy = 10.0 * math.sin(2 * math.pi * index / 27.0 + 1.0)
        zoom *= 1.0 + 0.04 * math.sin(2 * math.pi * index / 30.0 + 0.5)
    elif scene.path == "shake":
        steps = np.random.default_rng(scene.seed + 12345).normal(0.0, 3.0 / math.sqrt(2.0), (max(index, 1), 2))
        walk = np.cumsum(steps, axis=0)[index - 1] if index > 0 else np.zeros(2)
        dx, dy = float(walk[0]), float(walk[1])
    elif scene.path == "pan":
        dx = 20.0 * (index - (scene.frames - 1) / 2.0)
    elif scene.path == "zoomin":
        zoom *= 1.0 + 0.5 * min(index / 48.0, 1.0)
    elif scene.path == "roll":
        angle = math.radians(10.0) * math.sin(2 * math.pi * index / 36.0)
        pivot = np.array(_ROLL_PIVOT)
    elif scene.path != "linear":
        raise ValueError(f"unknown camera path {scene.path!r}; choose one of {PATHS}")
    scale = fit * zoom
    c, s = math.cos(angle), math.sin(angle)
    a = np.array([[scale * c, -scale * s, 0.0], [scale * s, scale * c, 0.0]])
    centre_photo = np.array([PHOTO_SIZE[0] / 2.0, PHOTO_SIZE[1] / 2.0])
    pivot_frame = np.array([scene.width / 2.0, scene.height / 2.0]) + scale * (pivot - centre_photo)
    a[:, 2] = pivot_frame + np.array([dx, dy]) - a[:, :2] @ pivot
    return a


def trajectory(scene: FaceScene, index: int) -> tuple[np.ndarray, int]:
    """The 2×3 similarity mapping photo coordinates to frame coordinates at ``index``, and the shot."""
    if scene.path != "linear":
        return _path_similarity(scene, index), 0
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


# --------------------------------------------------------------------------------------------------
# Crowd clips: t1.jpg's faces shrunk to a few tens of pixels and tiled over a big frame

#: the six faces of t1.jpg: MTCNN box (x0, y0, x1, y1) on the full-resolution photo, left to right
PHOTO_FACE_BOXES = (
    (49.0, 257.0, 170.0, 397.0),
    (275.0, 150.0, 372.0, 264.0),
    (466.0, 265.0, 571.0, 406.0),
    (739.0, 341.0, 843.0, 475.0),
    (906.0, 60.0, 1010.0, 199.0),
    (1131.0, 276.0, 1225.0, 395.0),
)


@dataclass(frozen=True)
class CrowdScene:
    """A grid of ``columns × rows`` faces from t1.jpg, face widths spread over ``sizes`` (px), panning slowly."""

    width: int = 1920
    height: int = 1080
    frames: int = 8
    columns: int = 8
    rows: int = 5
    sizes: tuple[float, float] = (16.0, 40.0)  # face (detector box) width, smallest to largest
    pan: tuple[float, float] = (6.3, -3.1)  # px over the whole clip
    degrade: float = 0.3
    seed: int = 0


@dataclass(frozen=True)
class CrowdFace:
    photo_face: int  # which of the six faces of t1.jpg
    size: float  # face width in frame px
    affine: np.ndarray  # 2×3 photo → frame at frame 0 (add ``crowd_shift`` for later frames)

    @property
    def centre(self) -> np.ndarray:
        """The centre of the face's box in the photo, where frame 0 shows it (frame px)."""
        x0, y0, x1, y1 = PHOTO_FACE_BOXES[self.photo_face]
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2]) @ self.affine[:, :2].T + self.affine[:, 2]


def crowd_faces(scene: CrowdScene) -> list[CrowdFace]:
    """Where each face of the crowd sits (frame 0); sizes cycle so every row holds small and large ones."""
    out = []
    cell_w, cell_h = scene.width / scene.columns, scene.height / scene.rows
    count = scene.columns * scene.rows
    rng = np.random.default_rng(scene.seed)
    for n in range(count):
        row, col = divmod(n, scene.columns)
        k = n % len(PHOTO_FACE_BOXES)
        lo, hi = scene.sizes
        size = lo + (hi - lo) * ((n * 7) % count) / max(count - 1, 1)
        x0, y0, x1, y1 = PHOTO_FACE_BOXES[k]
        scale = size / (x1 - x0)
        jitter = rng.uniform(-0.15, 0.15, 2) * np.array([cell_w, cell_h])
        centre = np.array([(col + 0.5) * cell_w, (row + 0.5) * cell_h]) + jitter
        photo_centre = np.array([0.5 * (x0 + x1), 0.5 * (y0 + y1)])
        affine = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
        affine[:, 2] = centre - scale * photo_centre
        out.append(CrowdFace(k, float(size), affine))
    return out


def crowd_shift(scene: CrowdScene, index: int) -> np.ndarray:
    t = index / max(scene.frames - 1, 1)
    return np.array(scene.pan, np.float64) * t


def crowd_frames(scene: CrowdScene) -> Iterator[np.ndarray]:
    """The crowd clip's frames (BGR uint8): faces pasted on a grey textured ground, the whole picture panning."""
    photo = faces_image()
    faces = crowd_faces(scene)
    for index in range(scene.frames):
        rng = np.random.default_rng(scene.seed * 1009 + index)
        yy, xx = np.mgrid[0 : scene.height, 0 : scene.width].astype(np.float32)
        shift = crowd_shift(scene, index)
        ground = 110 + 25 * np.sin((xx - shift[0]) / 53.0) * np.cos((yy - shift[1]) / 41.0)
        image = np.repeat(ground[..., None], 3, axis=2).astype(np.uint8)
        for face in faces:
            x0, y0, x1, y1 = PHOTO_FACE_BOXES[face.photo_face]
            side = 2.0 * (x1 - x0)
            cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
            patch_box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
            affine = face.affine.copy()
            affine[:, 2] += shift
            corners = patch_box.reshape(2, 2) @ affine[:, :2].T + affine[:, 2]
            fx0, fy0 = np.floor(corners[0]).astype(int)
            fx1, fy1 = np.ceil(corners[1]).astype(int)
            fx0, fy0, fx1, fy1 = max(fx0, 0), max(fy0, 0), min(fx1, scene.width), min(fy1, scene.height)
            if fx1 - fx0 < 2 or fy1 - fy0 < 2:
                continue
            # low-pass the photo region first (a warp alone would alias a 100 px face shrunk to 20)
            sx0, sy0 = int(max(patch_box[0] - 4, 0)), int(max(patch_box[1] - 4, 0))
            sx1, sy1 = int(min(patch_box[2] + 4, PHOTO_SIZE[0])), int(min(patch_box[3] + 4, PHOTO_SIZE[1]))
            source = cv2.GaussianBlur(photo[sy0:sy1, sx0:sx1], (0, 0), 0.45 / affine[0, 0])
            local = affine.copy()
            local[:, 2] += affine[:, :2] @ np.array([sx0, sy0], np.float64) - (fx0, fy0)
            patch = cv2.warpAffine(source, local, (fx1 - fx0, fy1 - fy0), flags=cv2.INTER_LINEAR)
            # soft round edge so the patch sits in the ground instead of being a square
            ph, pw = patch.shape[:2]
            py, px = np.mgrid[0:ph, 0:pw].astype(np.float32)
            centre = np.array([cx - sx0, cy - sy0]) @ local[:, :2].T + local[:, 2]
            radius = 0.5 * side * local[0, 0]
            alpha = np.clip((radius - np.hypot(px - centre[0], py - centre[1])) / max(radius * 0.2, 1.0), 0, 1)
            region = image[fy0:fy1, fx0:fx1].astype(np.float32)
            image[fy0:fy1, fx0:fx1] = (alpha[..., None] * patch + (1 - alpha[..., None]) * region).astype(np.uint8)
        if scene.degrade > 0:
            image = _degrade(image, scene.degrade, rng)
        yield image


# --------------------------------------------------------------------------------------------------
# Accuracy against the known trajectory (tests and bench/stability_bench.py)


@dataclass(frozen=True)
class EnteringPan:
    """A window of ``width`` moving right by ``speed`` px a frame over a crowd wider than it, so faces of
    ``sizes`` px come into view one after another (a pan, as faces enter in film)."""

    width: int = 1920
    height: int = 1080
    frames: int = 72
    speed: int = 10
    sizes: tuple[float, float] = (20.0, 40.0)

    @property
    def crowd(self) -> CrowdScene:
        wide = self.width + self.speed * self.frames
        return CrowdScene(width=wide, height=self.height, frames=1, columns=max(1, round(8 * wide / self.width)),
                          sizes=self.sizes, pan=(0.0, 0.0))  # fmt: skip

    def clip(self) -> np.ndarray:
        """The frames (BGR uint8), each a crop of one wide crowd picture."""
        picture = next(iter(crowd_frames(self.crowd)))
        return np.stack([picture[:, i * self.speed : i * self.speed + self.width] for i in range(self.frames)])

    def faces(self) -> tuple[np.ndarray, np.ndarray]:
        """(centres in the wide picture, face widths); in frame ``i`` a centre is at ``centre - (i * speed, 0)``."""
        faces = crowd_faces(self.crowd)
        return np.array([face.centre for face in faces]), np.array([face.size for face in faces])

    def first_in_view(self, centre: np.ndarray, size: float) -> int | None:
        """The first frame that shows the face (``size`` wide) whole, None if none does."""
        return next((i for i in range(self.frames) if centre[0] + size / 2 <= i * self.speed + self.width), None)

    def waits(self, boxes_by_frame: dict[int, list[np.ndarray]], last_chance: int = 12) -> tuple[list[int], int]:
        """For each face that comes whole into view after the first frame (and at least ``last_chance`` frames
        before the end): frames until a box of ``boxes_by_frame`` (x0, y0, x1, y1 per face, frame
        coordinates) is centred on it, within 0.4 of its width. Returns (those waits, faces never found
        while in view)."""
        waits, missed = [], 0
        centres, sizes = self.faces()
        for centre, size in zip(centres, sizes, strict=True):
            first = self.first_in_view(centre, size)
            if first is None or first == 0 or first >= self.frames - last_chance:
                continue
            seen = None
            for i in range(first, self.frames):
                if centre[0] - size / 2 < i * self.speed:
                    break  # gone out at the left
                boxes = np.asarray(boxes_by_frame.get(i, []), np.float64).reshape(-1, 4)
                found = 0.5 * (boxes[:, :2] + boxes[:, 2:])
                if len(found) and np.linalg.norm(found - (centre - (i * self.speed, 0.0)), axis=1).min() < 0.4 * size:
                    seen = i
                    break
            if seen is None:
                missed += 1
            else:
                waits.append(seen - first)
        return waits, missed


def nearest_photo_face(photo_points: np.ndarray, truth: np.ndarray, tolerance: float = 25.0) -> int | None:
    """Which of ``truth``'s faces ((6, 5, 2) photo px) the landmarks mapped back to the photo belong to."""
    dist = np.linalg.norm(truth.mean(1) - np.asarray(photo_points).mean(0), axis=1)
    k = int(np.argmin(dist))
    return k if dist[k] < tolerance else None


def _photo_of(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    inverse = np.linalg.inv(np.vstack([affine, [0.0, 0.0, 1.0]]))[:2]
    return np.asarray(points, np.float64) @ inverse[:, :2].T + inverse[:, 2]


def trajectory_accuracy(
    per_frame: Sequence[Sequence[np.ndarray]], clip: Sequence[SyntheticFrame], truth: np.ndarray, crop: int = 512
) -> tuple[float, float, int]:
    """(error, jitter, faces) of landmarks reported per frame of a known-trajectory clip.

    ``error``: RMS distance (frame px) of the landmarks from the truth (``truth``, the photo's landmarks, carried
    through each frame's known similarity), after removing each face's constant offset (the detector's own bias
    on that face, the same whatever the tracking). ``jitter``: frame-to-frame change of the photo → crop
    alignment (``crop``×``crop``, GPEN template) applied to the template points, RMS crop px: 0 when the crop
    follows the face exactly. ``faces``: how many of the photo's faces were reported.
    """
    from gpen_video.faces.geometry import face_to_crop, template_points

    series: dict[int, list[tuple[int, np.ndarray]]] = {}
    for index, faces in enumerate(per_frame):
        for lm in faces:
            k = nearest_photo_face(_photo_of(lm, clip[index].affine), truth)
            if k is not None:
                series.setdefault(k, []).append((index, np.asarray(lm, np.float64)))
    template = template_points("gpen", crop)
    err_sq, err_n, jit_sq, jit_n = 0.0, 0, 0.0, 0
    for k, rows in series.items():
        bias = np.mean([_photo_of(lm, clip[i].affine) for i, lm in rows], axis=0) - truth[k]
        previous = None
        for i, lm in rows:
            a = clip[i].affine
            expected = (truth[k] + bias) @ a[:, :2].T + a[:, 2]
            err_sq += float(np.sum((lm - expected) ** 2))
            err_n += lm.shape[0]
            photo_to_crop = np.vstack([face_to_crop(lm, crop), [0, 0, 1]]) @ np.vstack([a, [0, 0, 1]])
            if previous is not None and previous[0] == i - 1:
                change = photo_to_crop @ np.linalg.inv(previous[1])
                moved = template @ change[:2, :2].T + change[:2, 2]
                jit_sq += float(np.sum((moved - template) ** 2))
                jit_n += template.shape[0]
            previous = (i, photo_to_crop)
    return math.sqrt(err_sq / max(err_n, 1)), math.sqrt(jit_sq / max(jit_n, 1)), len(series)
