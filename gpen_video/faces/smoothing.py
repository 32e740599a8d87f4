"""Zero-phase, outlier-robust smoothing of one track's landmarks over a look-ahead window.

The pipeline is offline, so the estimate for frame ``t`` may use frames ``t-W .. t+W``: a local
*linear* fit centred on ``t`` follows steady pans and zooms without the lag a causal filter has,
and averages the detector's per-frame jitter away. A few Tukey-bisquare reweighting passes let a
single wild detection (a landmark jumping to an ear, a blink) count for nothing. The same fit
evaluated at a frame with no observation interpolates a short gap.
"""

from __future__ import annotations

import numpy as np

_TUKEY_C = 4.685
_ROBUST_PASSES = 3


def kernel_weights(offsets: np.ndarray, window: int) -> np.ndarray:
    """Epanechnikov weights for frame offsets in ``[-window, window]`` (close to a box: most noise removed)."""
    reach = float(window + 1)
    return np.clip(1.0 - (offsets / reach) ** 2, 0.0, None)


def local_linear(
    times: np.ndarray, values: np.ndarray, at: float, window: int, noise_floor: float = 0.0, degree: int = 1
) -> np.ndarray:
    """Robust local-linear (``degree`` 1) or local-constant (0) estimate at ``at`` of ``values`` (n, D) at ``times``.

    ``noise_floor`` (same unit as the values) keeps the outlier test from rejecting normal jitter when
    the residuals happen to be tiny (a static face); residuals are per sample (all D coordinates).
    """
    times = np.asarray(times, np.float64)
    values = np.asarray(values, np.float64)
    offsets = times - at
    base = kernel_weights(offsets, window)
    use = base > 0
    if not np.any(use):
        raise ValueError("no observation inside the window")
    offsets, base, values = offsets[use], base[use], values[use]
    if len(values) == 1:
        return values[0]
    design = np.stack([np.ones_like(offsets), offsets], axis=1)
    if np.ptp(offsets) == 0 or degree == 0:
        design = design[:, :1]
    weights = base.copy()
    estimate = None
    for _ in range(_ROBUST_PASSES + 1):
        coef = _weighted_lstsq(design, values, weights)
        estimate = coef[0]
        residual = np.linalg.norm(values - design @ coef, axis=1)
        mad = np.median(residual)
        scale = max(1.4826 * mad, noise_floor, 1e-9)
        u = residual / (_TUKEY_C * scale)
        robust = np.where(u < 1.0, (1.0 - u**2) ** 2, 0.0)
        new_weights = base * robust
        if new_weights.sum() <= 1e-9 or np.count_nonzero(new_weights) < design.shape[1]:
            break
        weights = new_weights
    return estimate


def _weighted_lstsq(design: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    sw = np.sqrt(weights)[:, None]
    coef, *_ = np.linalg.lstsq(design * sw, values * sw, rcond=None)
    return coef


def smooth_track(
    times: np.ndarray, values: np.ndarray, window: int, strength: float = 1.0, noise_floor: float = 0.0
) -> np.ndarray:
    """Smooth a whole series at once (offline helper, tests): one robust local fit per observed frame."""
    out = np.empty_like(np.asarray(values, np.float64))
    for i, t in enumerate(times):
        fitted = local_linear(times, values, float(t), window, noise_floor)
        out[i] = values[i] + strength * (fitted - values[i])
    return out


def second_difference_rms(series: list[np.ndarray]) -> tuple[float, int]:
    """Sum of squared second differences over runs of consecutive frames, and how many there were.

    ``series`` is a list of (n, D) arrays of consecutive-frame values; returns (sum of squares per
    point, count) so callers can pool tracks before taking the root.
    """
    total, count = 0.0, 0
    for values in series:
        v = np.asarray(values, np.float64)
        if len(v) < 3:
            continue
        d2 = v[2:] - 2 * v[1:-1] + v[:-2]
        pts = d2.reshape(len(d2), -1, 2)
        total += float(np.sum(pts**2))
        count += pts.shape[0] * pts.shape[1]
    return total, count
