"""Alignment geometry that faces and align share: where the 5 landmarks go in the model's crop, and the
similarity transform that puts them there.

``gpen``: the official GPEN alignment (``align_faces.py``): the 96×112 ArcFace reference points made
square (+8 px in x), padded by an inner factor of 0.25 (+28 px, crop 168) and scaled to the crop size.
``ffhq``: FaceFusion's ``ffhq_512`` template, which its GPEN-BFR-2048 ONNX runs use; it frames the
face about 17 % larger than the official template.
``arcface_128``: FaceFusion's ``arcface_128_v2``, which its ``gpen_bfr_256.onnx`` export uses: the same
ArcFace points made square on a 112 canvas (+8 px in x) and moved onto a 128 canvas (+8 px more in x).

``auto`` (the default of ``align.template``) takes the template the registry records for the model
(``models.registry.resolve_template``), and the official ``gpen`` one for a model it does not know.
"""

from __future__ import annotations

import numpy as np

from gpen_video.errors import ConfigError

_ARCFACE_96x112 = np.array(
    [
        [30.2946, 51.6963],
        [65.5318, 51.5014],
        [48.0252, 71.7366],
        [33.5493, 92.3655],
        [62.7299, 92.2041],
    ]
)

#: insightface's ``arcface_dst``: where ArcFace recognisers (``w600k_r50.onnx``) want the five points in their
#: 112×112 input, pixels (the 96×112 points made square, +8 px in x)
ARCFACE_112 = _ARCFACE_96x112 + np.array([8.0, 0.0])

#: landmarks as fractions of the crop side (left eye, right eye, nose, left mouth, right mouth)
TEMPLATES: dict[str, np.ndarray] = {
    "gpen": (_ARCFACE_96x112 + np.array([8.0 + 28.0, 28.0])) / 168.0,
    "ffhq": np.array(
        [
            [0.37691676, 0.46864664],
            [0.62285697, 0.46912813],
            [0.50123859, 0.61331904],
            [0.39308822, 0.72541100],
            [0.61150205, 0.72490465],
        ]
    ),
    "arcface_128": (ARCFACE_112 + np.array([8.0, 0.0])) / 128.0,
}


def template_points(name: str, size: int) -> np.ndarray:
    """The template's 5 points in pixels of a ``size``×``size`` crop, (5, 2) float64."""
    key = name.lower()
    if key not in TEMPLATES:
        raise ConfigError(f"unknown alignment template '{name}'; choose one of: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[key] * float(size)


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to ``dst``, as 2×3.

    Umeyama's closed form, as GPEN's ``_umeyama``; a reflection is never returned.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    var_src = (s0**2).sum() / len(src)
    scale = float((sigma * sign).sum() / var_src) if var_src > 0 else 1.0
    out = np.zeros((2, 3))
    out[:, :2] = scale * rotation
    out[:, 2] = mu_d - out[:, :2] @ mu_s
    return out


def face_to_crop(landmarks: np.ndarray, size: int, template: str = "gpen") -> np.ndarray:
    """2×3 frame→crop similarity that puts ``landmarks`` (5, 2) on the template in a size×size crop."""
    return umeyama_similarity(landmarks, template_points(template, size))


def invert_affine(affine: np.ndarray) -> np.ndarray:
    full = np.vstack([np.asarray(affine, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]
