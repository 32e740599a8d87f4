"""Grain that matches: measure the source's grain around a face, synthesise more like it on the restored face.

GPEN's faces are grain-free; pasted into a grainy film frame they look like stickers. For each face:

1. **measure** (``measure_grain``): in a ring just outside the face's crop square, the high-pass residual
   (the picture minus its Gaussian blur) of the *flat* pixels only — those whose local structure is near
   the ring's quietest (the grain's own), not a fixed fraction that would favour weak grain — gives, per
   channel, the noise level (a robust std, 1.4826 × MAD), its
   spatial character (the residual's lag-1 autocorrelation, turned into the blur of white noise that gives
   the same, from a calibration table) and the correlation between channels;
2. **synthesise** (``synthesise_grain``): white noise, mixed across channels by that correlation, blurred
   per channel by that grain size and scaled so that its residual has the measured level — in frame pixels,
   over the face's footprint, with a seed from (the frame's source timestamp, the face's place in the frame's
   paste order): new grain every frame, the same in every run, preview or batch segment;
3. **carry into the crop** (``grain_for_crops``): the frame-space grain is warped into crop space with the
   face's frame→crop transform, so that the paste (crop→frame) puts it back on the frame's pixel grid at the
   frame's grain size instead of a crop-resolution grain shrunk by the paste; the level the two bilinear
   warps take from it (up to 70 % for fine grain) is given back, measured on the round trip itself.

The grain is added to the restored crop before the paste; frames without faces are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from gpen_video.faces.geometry import invert_affine

HIGHPASS_SIGMA = 1.5  # residual = image - blur(image, this): keeps grain, drops shading
STRUCTURE_SIGMA = 3.0  # scale at which "flat" is judged
FLAT_FRACTION = 0.5  # on a grain-free restored face, the grain is judged on its smoothest half
FLAT_FLOOR = 0.25  # the structure of the quietest quarter of the pixels: the grain's own, the noise floor
FLAT_FACTOR = 2.5  # flat: structure within this many times the floor (all of pure grain up to size 3.0)
RING = (1.02, 1.35)  # ring between these multiples of the crop square's half side (frame px)
MIN_PIXELS = 120  # fewer flat pixels than this: the level is too uncertain to match (about ±9 % at 120)
CORE = 0.7  # inside this many half crop sides the paste mask is 1: where the face's own texture is read
GRAIN_SIZES = np.array([0.0, 0.3, 0.45, 0.6, 0.75, 0.9, 1.1, 1.3, 1.6, 2.0, 2.5, 3.0])  # blur sigma of white noise


@dataclass(frozen=True)
class GrainProfile:
    """The grain of one face's surroundings, per channel (BGR), in the frame's sample units."""

    std: tuple[float, float, float]  # residual std per channel (what the high-pass measure reads)
    size: tuple[float, float, float]  # blur sigma of white noise with the same lag-1 residual correlation
    correlation: tuple[tuple[float, ...], ...]  # 3×3 between-channel correlation of the residual
    pixels: int  # how many flat pixels were measured

    @property
    def usable(self) -> bool:
        return self.pixels >= MIN_PIXELS and max(self.std) > 0

    @staticmethod
    def none() -> GrainProfile:
        return GrainProfile((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), ((1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)), 0)


def highpass(image: np.ndarray, sigma: float = HIGHPASS_SIGMA) -> np.ndarray:
    """Float32 residual ``image - GaussianBlur(image, sigma)`` (per channel)."""
    a = np.asarray(image, np.float32)
    return a - cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def robust_std(values: np.ndarray) -> float:
    """1.4826 × median absolute deviation: the std of Gaussian noise, unmoved by a few edges left in."""
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def crop_coordinates(affine: np.ndarray, region: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop-space (u, v) of every frame pixel centre in ``region`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = region
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    a = np.asarray(affine, np.float64)
    return a[0, 0] * xs + a[0, 1] * ys + a[0, 2], a[1, 0] * xs + a[1, 1] * ys + a[1, 2]


def _square_distance(affine: np.ndarray, size: int, region: tuple[int, int, int, int]) -> np.ndarray:
    """Chebyshev distance of each region pixel from the crop centre, in half crop sides (1 = the crop's edge)."""
    u, v = crop_coordinates(affine, region)
    half = size / 2.0
    return np.maximum(np.abs(u - half + 0.5), np.abs(v - half + 0.5)) / half


def ring_region(
    affine: np.ndarray, size: int, frame_shape: tuple[int, int], outer: float = RING[1]
) -> tuple[int, int, int, int] | None:
    """Frame rectangle (clipped) holding the crop square grown to ``outer`` half sides; None if off-frame."""
    to_frame = invert_affine(np.asarray(affine, np.float64))
    c = size / 2.0
    corners = np.array([[c + s * c * outer, c + t * c * outer, 1.0] for s in (-1, 1) for t in (-1, 1)])
    pts = corners @ to_frame.T
    h, w = frame_shape
    x0, y0 = max(int(np.floor(pts[:, 0].min())), 0), max(int(np.floor(pts[:, 1].min())), 0)
    x1, y1 = min(int(np.ceil(pts[:, 0].max())) + 1, w), min(int(np.ceil(pts[:, 1].max())) + 1, h)
    return (x0, y0, x1, y1) if x1 - x0 > 4 and y1 - y0 > 4 else None


def ring_mask(affine: np.ndarray, size: int, frame_shape: tuple[int, int], ring: tuple[float, float] = RING):
    """(region, bool mask over it) of the frame pixels in the ring just outside the face's crop square."""
    region = ring_region(affine, size, frame_shape, ring[1])
    if region is None:
        return None, None
    d = _square_distance(affine, size, region)
    return region, (d > ring[0]) & (d <= ring[1])


def _structure(picture: np.ndarray) -> np.ndarray:
    """Local structure of ``picture`` (H, W, 3) at a coarse scale: smoothed gradient magnitude of its grey."""
    grey = np.asarray(picture, np.float32).mean(axis=2)
    smooth = cv2.GaussianBlur(grey, (0, 0), HIGHPASS_SIGMA)
    gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    return cv2.GaussianBlur(np.hypot(gx, gy), (0, 0), STRUCTURE_SIGMA)


def _flat(picture: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The flat pixels of grainy ``where``: structure within ``FLAT_FACTOR`` × the floor (its quietest quarter).

    On grain alone the structure map is the grain's own (it varies less than 2.2× between its 25th and 99th
    percentiles up to size 3.0), so every grain pixel is kept and only real edges and texture are dropped.
    A fixed fraction (say the flattest half) would keep the pixels where coarse grain happens to be weak and
    read its level low: -12 % at size 1.4, -19 % at 3.0.
    """
    structure = _structure(picture)
    values = structure[where]
    if values.size == 0:
        return where
    return where & (structure <= FLAT_FACTOR * np.quantile(values, FLAT_FLOOR))


def _smoothest(face: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The smoothest ``FLAT_FRACTION`` of a restored face's ``where``: its skin, where added grain shows.

    A fraction is right here (unlike ``_flat``): the face has not got the grain yet, so choosing its
    smoothest pixels does not choose weak grain.
    """
    structure = _structure(face)
    values = structure[where]
    if values.size == 0:
        return where
    return where & (structure <= np.quantile(values, FLAT_FRACTION))


@lru_cache(maxsize=1)
def _calibration() -> tuple[np.ndarray, np.ndarray]:
    """For each white-noise blur in ``GRAIN_SIZES``: (residual lag-1 correlation, residual std per unit std)."""
    rng = np.random.default_rng(20240601)
    white = rng.standard_normal((384, 384)).astype(np.float32)
    rho, gain = [], []
    for sigma in GRAIN_SIZES:
        field = _blur_unit(white, float(sigma))
        r = highpass(field)[16:-16, 16:-16]
        rho.append(_lag1(r))
        gain.append(float(r.std()))
    return np.array(rho), np.array(gain)


def _blur_unit(white: np.ndarray, sigma: float) -> np.ndarray:
    """White noise blurred by ``sigma`` and rescaled to unit std (so only its spatial character changes)."""
    if sigma <= 0:
        return white
    field = cv2.GaussianBlur(white, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return field / max(float(field.std()), 1e-6)


def _lag1(residual: np.ndarray, where: np.ndarray | None = None) -> float:
    """Mean of the horizontal and vertical lag-1 autocorrelation of ``residual`` (pairs inside ``where``)."""
    out = []
    for a, b, m in (
        (residual[:, :-1], residual[:, 1:], None if where is None else where[:, :-1] & where[:, 1:]),
        (residual[:-1], residual[1:], None if where is None else where[:-1] & where[1:]),
    ):
        x, y = (a, b) if m is None else (a[m], b[m])
        if x.size < 16:
            continue
        x, y = x - x.mean(), y - y.mean()
        out.append(float((x * y).mean() / max(np.sqrt((x * x).mean() * (y * y).mean()), 1e-9)))
    return float(np.mean(out)) if out else 0.0


def size_from_correlation(rho: float) -> float:
    """Blur sigma of white noise whose residual has lag-1 correlation ``rho`` (interpolated, clamped)."""
    table_rho, _ = _calibration()
    return float(np.interp(rho, table_rho, GRAIN_SIZES))  # rho rises with the blur: a monotonic table


def residual_gain(size: float) -> float:
    """Residual std of unit-std grain of this size: divides the measured level to get the grain's own std."""
    _, table_gain = _calibration()
    return float(np.interp(size, GRAIN_SIZES, table_gain))


def measure_grain(frame: np.ndarray, affine: np.ndarray, size: int) -> GrainProfile:
    """The grain around one face: ``frame`` (H, W, 3) uint8/uint16; ``affine`` frame→crop; ``size`` the crop side."""
    region, ring = ring_mask(affine, size, frame.shape[:2])
    if region is None or ring is None or ring.sum() < MIN_PIXELS:
        return GrainProfile.none()
    x0, y0, x1, y1 = region
    pad = int(4 * max(HIGHPASS_SIGMA, STRUCTURE_SIGMA))  # context for the filters beyond the ring
    px0, py0 = max(x0 - pad, 0), max(y0 - pad, 0)
    px1, py1 = min(x1 + pad, frame.shape[1]), min(y1 + pad, frame.shape[0])
    window = frame[py0:py1, px0:px1]
    where = np.zeros(window.shape[:2], bool)
    where[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0] = ring
    flat = _flat(window, where)
    residual = highpass(window)
    stds, sizes = [], []
    for c in range(3):
        r = residual[..., c]
        stds.append(robust_std(r[flat]))
        sizes.append(size_from_correlation(_lag1(r, flat)))
    samples = residual[flat].astype(np.float64)
    corr = np.corrcoef(samples.T) if samples.shape[0] > 3 else np.eye(3)
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 1.0)
    return GrainProfile(tuple(stds), tuple(sizes), tuple(tuple(float(x) for x in row) for row in corr), int(flat.sum()))


def grain_seed(frame_key: int, face: int, salt: int = 0x6772) -> np.random.Generator:
    """The generator of one face's grain on one frame (``frame_key``: its source pts; ``face``: its place in the
    frame's paste order): new every frame, the same in every run, whatever the run's start or segments."""
    return np.random.default_rng(np.random.SeedSequence([int(frame_key) & 0xFFFFFFFFFFFFFFFF, int(face), salt]))


def synthesise_grain(profile: GrainProfile, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 grain whose high-pass residual has the profile's level, size and channel correlation."""
    h, w = shape
    white = rng.standard_normal((3, h, w)).astype(np.float32)
    corr = np.asarray(profile.correlation, np.float64)
    try:
        mix = np.linalg.cholesky(corr + 1e-6 * np.eye(3)).astype(np.float32)
    except np.linalg.LinAlgError:
        mix = np.eye(3, dtype=np.float32)
    mixed = np.einsum("ij,jhw->ihw", mix, white)
    out = np.empty((h, w, 3), np.float32)
    for c in range(3):
        field = _blur_unit(mixed[c], profile.size[c])
        out[..., c] = field * (profile.std[c] / max(residual_gain(profile.size[c]), 1e-6))
    return out


def grain_for_crops(
    frame: np.ndarray,
    affines: np.ndarray,
    size: int,
    frame_key: int,
    profiles: list[GrainProfile] | None = None,
    restored: np.ndarray | None = None,
) -> np.ndarray:
    """(N, size, size, 3) float32 grain to add to the restored crops, in the crops' 0..255 units.

    Made in frame pixels over each face's footprint (seeded by ``frame_key``, the frame's source pts, and each
    face's place in the frame) and warped into crop space with the face's own transform, so the paste lays it
    back on the frame's grid. ``profiles`` default to ``measure_grain`` on ``frame`` around each face. With
    ``restored`` (the restored crops, 0..255), the fine texture the face already has counts towards the level
    (``fit_levels``), so a detailed face does not end up noisier than its surroundings. No faces: an empty array.
    """
    n = len(affines)
    out = np.zeros((n, size, size, 3), np.float32)
    if n == 0:
        return out
    top = 65535.0 if frame.dtype == np.uint16 else 255.0
    for k in range(n):
        affine = np.asarray(affines[k], np.float64)
        profile = profiles[k] if profiles is not None else measure_grain(frame, affine, size)
        region = ring_region(affine, size, frame.shape[:2], outer=1.0) if profile.usable else None
        if region is None:
            continue
        x0, y0, x1, y1 = region
        field = synthesise_grain(profile, (y1 - y0, x1 - x0), grain_seed(frame_key, k))
        local = affine.copy()
        local[:, 2] += affine[:, :2] @ np.array([x0, y0], np.float64)  # region pixel -> crop
        grain = cv2.warpAffine(field, local, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        core = _square_distance(affine, size, region) < CORE
        seen = _to_region(grain, affine, region)  # what the paste will lay on the frame
        gains = _interpolation_loss(field, seen, core)
        if restored is not None:  # the face's own texture counts: scale the grain so the sum hits the level
            face = _to_region(np.asarray(restored[k], np.float32) * (top / 255.0), affine, region)
            gains *= fit_levels(face, seen * gains, _smoothest(face, core), profile.std)
        out[k] = grain * gains
    return out * (255.0 / top)


def _to_region(crop: np.ndarray, affine: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """A float32 crop laid on the frame's grid over ``region`` as the paste lays it (bilinear, edges replicated)."""
    x0, y0, x1, y1 = region
    to_region = invert_affine(np.asarray(affine, np.float64))
    to_region[:, 2] -= (x0, y0)
    return cv2.warpAffine(crop, to_region, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _interpolation_loss(field: np.ndarray, seen: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Per-channel gains that give the grain back the level the frame→crop→frame warps take from it.

    Each bilinear warp averages neighbours wherever the crop's grid does not fall on the frame's: without
    these gains the round trip leaves fine grain at 30-84 % of its level and size-0.8 grain at 60-93 % (crops
    at 1-4 crop pixels a frame pixel, rotated or at fractional offsets; 100 % only at an integer scale and
    offset). The gains restore the level; the round trip still blurs the grain a little (makes it coarser).
    """
    made, kept = highpass(field), highpass(seen)
    gains = np.ones(3, np.float32)
    if int(where.sum()) < MIN_PIXELS:
        return gains
    for c in range(3):
        level = robust_std(kept[..., c][where])
        if level > 0:
            gains[c] = robust_std(made[..., c][where]) / level
    return gains


def fit_levels(face: np.ndarray, grain: np.ndarray, where: np.ndarray, target: tuple[float, ...]) -> np.ndarray:
    """Per-channel gains ``g`` with ``robust_std(highpass(face) + g * highpass(grain)) == target`` on ``where``.

    The face's own fine texture counts towards the level, so a detailed face gets less grain than a smooth
    one and ends no noisier than its surroundings (0 when the texture alone reaches the target).
    """
    rf, rg = highpass(face), highpass(grain)
    gains = np.zeros(3, np.float32)
    for c in range(3):
        f, g = rf[..., c][where], rg[..., c][where]
        if f.size < MIN_PIXELS:  # too small a face to read its texture: the plain level
            gains[c] = 1.0
            continue
        if target[c] <= robust_std(f):
            continue
        lo, hi = 0.0, 1.0
        while robust_std(f + hi * g) < target[c] and hi < 64:
            hi *= 2
        for _ in range(24):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if robust_std(f + mid * g) < target[c] else (lo, mid)
        gains[c] = 0.5 * (lo + hi)
    return gains


def add_grain(restored: np.ndarray, grain: np.ndarray) -> np.ndarray:
    """Restored crops (N, S, S, 3) plus grain, as float32 in 0..255 (not re-quantised: 16-bit frames keep it)."""
    if len(restored) == 0:
        return np.asarray(restored, np.float32)
    return np.clip(restored.astype(np.float32) + grain, 0.0, 255.0)
