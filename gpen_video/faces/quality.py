"""A face's input quality, measured on its pixels before any GPU time is spent (issue 21): how much real detail
the restorer has to work from, so a face too degraded to restore faithfully (GPEN would invent it) is named.

ModelScope's portrait pipeline skips faces its own quality network scores under 0.1; there is no such network
offline, so this is a signal-processing figure, each part measured and calibrated on real faces: insightface's
``t1.jpg`` (six people at 40–59 px face scale), degraded by known amounts with OpenCV (``tests/test_face_quality.py``).

What ``FaceQuality`` holds:

- ``face_px``: the face scale in source pixels (eyes' centre to mouth's centre, ``types.face_scale``): how much
  resolution there is at most.
- ``noise``: the noise sigma in 8-bit levels (uint16 samples count 1/257), averaged over the channels, on the
  central ``NOISE_WINDOW`` pixels of the face box: Immerkær's estimate from his Laplacian-difference kernel (it
  cancels smooth structure), with the median absolute response in place of his mean, so the edges a small face is
  made of count less. The clean photo reads 0.6–0.7, with Gaussian noise of sigma 4 / 8 / 16 added 4.0–4.3 /
  7.9–8.2 / 15.5–16.1. Under about 16 px face scale the face's own edges read as noise (2–6 at 8 px).
- ``blockiness``: how much stronger the grey steps between neighbours are across the strongest phase of an
  8-pixel grid than across the median phase (columns and rows; the phase is found, so a shift or crop of the frame
  does not hide the grid), on the central ``BLOCK_WINDOW`` pixels of the face box; 1 where the box is under
  ``BLOCK_MIN_COUNT`` blocks a side. The photo (a JPEG) reads 1.28–1.37, blurred or down- and up-scaled
  1.0–1.2, re-encoded at quality 90 / 40 / 15 1.1–1.3 / 1.45–1.60 / 2.0–2.2.
- ``detail`` (0..1): how much of the detail of a sharp face at ``CANONICAL_SCALE`` is there. The grey face region
  is resampled so the face scale is ``CANONICAL_SCALE`` px (area averaging when shrinking; a smaller face is
  enlarged, cubic, and shows its lack of detail). It is not rotated (that would blur it once more): the bands are
  isotropic and the ellipse they are averaged over (brows to chin) is laid along the landmarks. The energy of the
  finest band (grey minus its Gaussian blur of ``HIGH_SIGMA`` px) over that of a structure band (blur
  ``HIGH_SIGMA`` minus blur ``MID_SIGMA``) falls with blur and with enlargement, and lighting and contrast cancel
  out. Noise is taken out of both bands first: the grey noise sigma squared times what white noise of sigma 1
  gives in each band through the same resampling (a seeded noise field, measured once per 1/16 octave of scale),
  so noise does not read as detail. The ratio over ``SHARP_RATIO``, capped at 1, times
  ``min(1, BLOCK_FLOOR / blockiness)``: block edges put steps in the finest band that are no part of the face.
- ``score`` (0..1): ``detail`` times the share of the finest band that is the face rather than noise (signal over
  signal plus noise, at the canonical scale). ``face_px`` enters through ``detail``. A face under
  ``TOO_DEGRADED`` is too degraded to restore faithfully (``verdict()``).

Calibration, on the six faces (score ranges over them):

- ``SHARP_RATIO`` 0.30: the band ratio the clean faces level off at once larger than the canonical size
  (0.20–0.32 enlarged ×3; 0.19–0.30 at their own size), so a sharp face reads about 1; the photo's one soft face
  (smooth skin, little texture) reads 0.63, the others 0.79–1.
- ``BLOCK_FLOOR`` 1.4: above the photo's own blockiness, so its JPEG and a quality-90 re-encode cost nothing,
  quality 40 costs 0.04–0.11 of the detail and quality 15 about a third (scores 0.44–0.69).
- ``TOO_DEGRADED`` 0.25: what a clean face of about 10 px face scale scores (0.19–0.27; at 8 px 0.13–0.20, at 12 px
  0.25–0.37). A face ×8 down- and up-scaled (5–7 px of real resolution) scores 0.11–0.18, ×4 0.27–0.46, ×2
  0.47–0.81; blurred by sigma 2 / 3 px at its size 0.20–0.34 / 0.12–0.21; with noise of sigma 8 0.56–0.92 and 16
  0.42–0.76.

What it does not see: a face's own content moves the band ratio (smooth skin reads lower than a lined or bearded
face, by up to a third); codecs that deblock (H.264, HEVC) leave few block edges, so their loss counts only as
lost fine detail; noise that is not white (grain larger than a pixel, noise enlarged with the picture) partly
reads as detail; the finest band is a face's at ``CANONICAL_SCALE``, so the compression of a large face counts
only through blockiness. Cost: about 0.3–0.7 ms of one core per face at 1080p (17–176 px face scale), 1.4 ms
for a face that fills the frame (352 px).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from gpen_video.faces.types import face_box

#: the face scale (px, eyes' centre to mouth's centre) the detail is measured at
CANONICAL_SCALE = 32.0
#: half the side of the square cut around the face, in face scales (the ellipse and the bands' reach)
REGION = 1.5
#: the ellipse the bands are averaged over, in face scales: half-width across the face, half-height along it,
#: and how far its centre sits above the midpoint of the eyes' and mouth's centres
ELLIPSE_ACROSS = 0.85
ELLIPSE_ALONG = 1.1
ELLIPSE_RAISE = 0.1
#: Gaussian blurs (canonical px) that bound the finest band (grey − blur) and the structure band
HIGH_SIGMA = 1.0
MID_SIGMA = 3.0
#: the finest band's energy over the structure band's of a sharp face (calibrated, see the module docstring)
SHARP_RATIO = 0.30
#: block grid period (px) and the blockiness up to which a face counts as uncompressed
BLOCK = 8
BLOCK_FLOOR = 1.4
#: blockiness is measured on regions at least this many blocks a side (fewer: blocks and content are confused)
BLOCK_MIN_COUNT = 6
#: noise and blockiness are measured on the face box, at most this many source pixels a side about its centre
NOISE_WINDOW = 64
BLOCK_WINDOW = 128
#: under this score a face is too degraded to restore faithfully
TOO_DEGRADED = 0.25

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_HALF_NORMAL_MEDIAN = 0.6745  # the median of |x| for x normal of sigma 1
_NOISE_STEPS = 16  # noise gains are measured at factors 2^(k / _NOISE_STEPS)
_NOISE_LIMITS = (1.0 / 16.0, 8.0)  # ... within these; beyond, the nearest (shrinking: scaled by 1 / factor²)
_NOISE_SIDE = 96  # side of the canonical noise field the gains are measured on
_BORDER = 8  # its border left out of the measure (the blurs' reflected edges)


@dataclass(frozen=True)
class FaceQuality:
    """One face's input quality (see the module docstring for what each number means and how it is calibrated)."""

    face_px: float  # face scale in source pixels
    detail: float  # 0..1: share of a sharp face's detail present at the canonical scale
    noise: float  # noise sigma, 8-bit levels
    blockiness: float  # ≥ ~1: block-grid edges over typical steps
    score: float  # 0..1: detail, times the share of the finest band that is not noise

    @property
    def too_degraded(self) -> bool:
        """Whether the face is too degraded to restore faithfully (``score`` under ``TOO_DEGRADED``)."""
        return self.score < TOO_DEGRADED

    def verdict(self) -> str:
        """``too_degraded`` or ``restorable``, as a report names it."""
        return "too_degraded" if self.too_degraded else "restorable"

    def to_dict(self) -> dict[str, Any]:
        return {
            "face_px": round(self.face_px, 2),
            "detail": round(self.detail, 4),
            "noise": round(self.noise, 3),
            "blockiness": round(self.blockiness, 3),
            "score": round(self.score, 4),
            "verdict": self.verdict(),
        }


@dataclass(frozen=True)
class _Canonical:
    """The grey face region resampled to the canonical scale, and where the face lies in it."""

    grey: np.ndarray  # (h, w) float32, 8-bit levels
    centre: np.ndarray  # (2,) the midpoint of the eyes' and mouth's centres, canonical px
    down: np.ndarray  # (2,) unit vector from the eyes' centre to the mouth's
    factor: float  # source px per canonical px (> 1: the face was shrunk)


def face_quality(image: np.ndarray, landmarks: np.ndarray) -> FaceQuality:
    """The input quality of the face with five ``landmarks`` (frame px, the project's order) in ``image``
    (BGR or grey, uint8 or uint16)."""
    levels = _levels(image)
    lm = np.asarray(landmarks, np.float64)
    eyes, mouth = 0.5 * (lm[0] + lm[1]), 0.5 * (lm[3] + lm[4])
    face_px = float(np.linalg.norm(mouth - eyes))
    box = face_box(lm)
    samples = _window(image, box, NOISE_WINDOW)
    if min(samples.shape[:2]) < 3:
        return FaceQuality(face_px, 0.0, 0.0, 1.0, 0.0)
    noise = float(np.mean(immerkaer_sigmas(samples))) * levels
    canonical = _canonical(image, eyes, mouth)
    if canonical is None:
        return FaceQuality(face_px, 0.0, noise, 1.0, 0.0)
    grey_noise = float(immerkaer_sigmas(_grey(samples))[0]) * levels
    blocks = blockiness(_grey(_window(image, box, BLOCK_WINDOW)))
    high, mid = _band_energies(canonical)
    gain_high, gain_mid = _noise_gains(canonical.factor)
    noise_high = grey_noise**2 * gain_high
    signal_high = max(high - noise_high, 0.0)
    signal_mid = max(mid - grey_noise**2 * gain_mid, 1e-6)
    sharpness = min(signal_high / signal_mid / SHARP_RATIO, 1.0)
    detail = sharpness * min(1.0, BLOCK_FLOOR / blocks)
    clean_share = signal_high / (signal_high + noise_high) if signal_high > 0 else 0.0
    return FaceQuality(face_px, detail, noise, blocks, detail * clean_share)


def immerkaer_sigmas(samples: np.ndarray) -> np.ndarray:
    """Immerkær's noise estimate (sigma, the samples' levels) of each channel of an (h, w) or (h, w, c) region,
    from the response of his Laplacian-difference kernel, which cancels smooth image structure: its median
    absolute value rather than his mean, so the edges a small face is made of count less (white noise of sigma
    1 gives a response of sigma 6)."""
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    if min(samples.shape[:2]) < 3:
        return np.zeros(channels)
    depth = cv2.CV_16S if samples.dtype == np.uint8 else cv2.CV_32F
    response = cv2.filter2D(samples, depth, _IMMERKAER)[1:-1, 1:-1]
    magnitudes = np.abs(response.reshape(-1, channels).T)
    return np.median(magnitudes, axis=1).astype(np.float64) / (6.0 * _HALF_NORMAL_MEDIAN)


def blockiness(grey: np.ndarray) -> float:
    """How much stronger the mean absolute step between neighbours is across the strongest phase of a
    ``BLOCK``-pixel grid than across the median phase, columns and rows together; 1 without a grid (or a region
    under ``BLOCK_MIN_COUNT`` blocks a side, where blocks cannot be told from content)."""
    if min(grey.shape) < BLOCK_MIN_COUNT * BLOCK:
        return 1.0
    across = cv2.reduce(cv2.absdiff(grey[:, 1:], grey[:, :-1]), 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
    down = cv2.reduce(cv2.absdiff(grey[1:], grey[:-1]), 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
    phases = [np.array([profile[p::BLOCK].mean() for p in range(BLOCK)]) for profile in (across, down)]
    typical = sum(float(np.median(p)) for p in phases)
    if typical <= 0.0:
        return 1.0
    return sum(float(p.max()) for p in phases) / typical


def _levels(image: np.ndarray) -> float:
    """What one sample of ``image``'s dtype is in 8-bit levels."""
    if image.dtype == np.uint8:
        return 1.0
    if image.dtype == np.uint16:
        return 1.0 / 257.0
    raise TypeError(f"face_quality takes uint8 or uint16 images, not {image.dtype}")


def _grey(samples: np.ndarray) -> np.ndarray:
    """The grey of a BGR or grey region, its dtype."""
    return cv2.cvtColor(samples, cv2.COLOR_BGR2GRAY) if samples.ndim == 3 else samples


def _window(image: np.ndarray, box: np.ndarray, side: int) -> np.ndarray:
    """The face ``box`` inside the frame, its central ``side`` pixels a side at most."""
    x0, y0, x1, y1 = box
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    hw, hh = min(0.5 * (x1 - x0), side / 2), min(0.5 * (y1 - y0), side / 2)
    return _inside(image, cx - hw, cy - hh, cx + hw, cy + hh)[0]


def _inside(image: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, int, int]:
    """The part of ``image`` in a box (px), and where it starts."""
    height, width = image.shape[:2]
    left, top = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    right, bottom = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
    return image[top : max(bottom, top), left : max(right, left)], left, top


def _resample(grey: np.ndarray, factor: float, levels: float) -> tuple[np.ndarray, float, float]:
    """``grey`` made ``factor`` times smaller, float32 in 8-bit levels: area averaging when shrinking (first by
    the whole factor ``factor // 2`` where that is 2 or more, OpenCV's fast path), cubic when enlarging; and
    the scales (x, y) it was made smaller by: x' = (x + 0.5) · scale − 0.5."""
    height, width = grey.shape
    step = int(factor // 2)
    if step >= 2:
        height, width = height // step * step, width // step * step
        grey = cv2.resize(grey[:height, :width], (width // step, height // step), interpolation=cv2.INTER_AREA)
    size = (max(round(width / factor), 1), max(round(height / factor), 1))
    samples = grey.astype(np.float32) * np.float32(levels)
    interpolation = cv2.INTER_AREA if factor > 1.0 else cv2.INTER_CUBIC
    return cv2.resize(samples, size, interpolation=interpolation), size[0] / width, size[1] / height


def _canonical(image: np.ndarray, eyes: np.ndarray, mouth: np.ndarray) -> _Canonical | None:
    """The face's square region at the canonical scale; None where too little of it is in the frame."""
    scale = float(np.linalg.norm(mouth - eyes))
    centre = 0.5 * (eyes + mouth)
    reach = REGION * scale
    region, left, top = _inside(image, *(centre - reach), *(centre + reach))
    factor = scale / CANONICAL_SCALE
    if scale <= 0.0 or min(region.shape[:2]) * CANONICAL_SCALE < 4 * MID_SIGMA * scale:
        return None
    grey, sx, sy = _resample(_grey(region), factor, _levels(image))
    at = np.array([(centre[0] - left + 0.5) * sx - 0.5, (centre[1] - top + 0.5) * sy - 0.5])
    return _Canonical(grey, at, (mouth - eyes) / scale, factor)


def _ellipse_weights(canonical: _Canonical) -> np.ndarray:
    """(h, w) float32 weights, 1 at the face's centre falling to 0 at ``ELLIPSE_*`` (brows to chin)."""
    height, width = canonical.grey.shape
    down = canonical.down.astype(np.float32)
    middle = canonical.centre - ELLIPSE_RAISE * CANONICAL_SCALE * canonical.down
    dx = np.arange(width, dtype=np.float32)[None, :] - np.float32(middle[0])
    dy = np.arange(height, dtype=np.float32)[:, None] - np.float32(middle[1])
    along = (dx * down[0] + dy * down[1]) / np.float32(ELLIPSE_ALONG * CANONICAL_SCALE)
    across = (dy * down[0] - dx * down[1]) / np.float32(ELLIPSE_ACROSS * CANONICAL_SCALE)
    return np.clip(1.0 - along**2 - across**2, 0.0, None)


def _bands(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The finest band (grey − blur ``HIGH_SIGMA``) and the structure band (blur ``HIGH_SIGMA`` − ``MID_SIGMA``)."""
    fine = cv2.GaussianBlur(grey, (0, 0), HIGH_SIGMA, borderType=cv2.BORDER_REFLECT)
    coarse = cv2.GaussianBlur(grey, (0, 0), MID_SIGMA, borderType=cv2.BORDER_REFLECT)
    return grey - fine, fine - coarse


def _band_energies(canonical: _Canonical) -> tuple[float, float]:
    """Mean squared finest and structure bands over the face's ellipse (8-bit levels squared)."""
    weights = _ellipse_weights(canonical)
    total = float(weights.sum())
    if total <= 0.0:
        return 0.0, 0.0
    high, mid = _bands(canonical.grey)
    return float(np.vdot(weights * high, high)) / total, float(np.vdot(weights * mid, mid)) / total


def _noise_gains(factor: float) -> tuple[float, float]:
    """What white noise of sigma 1 in the source gives in the finest and structure bands' energies after the
    resampling by ``factor`` (measured, to 1/16 octave)."""
    low, high = _NOISE_LIMITS
    clamped = min(max(factor, low), high)
    gains = _measured_noise_gains(round(float(np.log2(clamped)) * _NOISE_STEPS))
    shrink_beyond = (high / factor) ** 2 if factor > high else 1.0
    return gains[0] * shrink_beyond, gains[1] * shrink_beyond


@lru_cache(maxsize=256)
def _measured_noise_gains(step: int) -> tuple[float, float]:
    """The band energies of a seeded white-noise field resampled by 2^(step / 16) to ``_NOISE_SIDE`` px."""
    factor = 2.0 ** (step / _NOISE_STEPS)
    side = max(round(_NOISE_SIDE * factor), 2)
    field = np.random.default_rng(step + 1000).standard_normal((side, side)).astype(np.float32)
    high, mid = _bands(_resample(field, factor, 1.0)[0])
    inner = slice(_BORDER, -_BORDER)
    return float(np.mean(high[inner, inner] ** 2)), float(np.mean(mid[inner, inner] ** 2))
