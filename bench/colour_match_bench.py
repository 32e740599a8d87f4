"""Compose's colour match: the opponent-space affine (``align.compose.colour_shift``) against the Lab match it
replaced, on the real faces of t1.jpg, in the same run.

    python bench/colour_match_bench.py [--size 512] [--rounds 20]

The faces are cut at ``--size`` from a 1280x720 frame of the six t1.jpg faces; each is then changed the way a
restorer might change it (a tint, more contrast, a gamma, a blur with a tint, less saturation, a warm and dark
shift) and matched back to its source by both methods. It prints:

- per change, the mean CIE76 ΔE (in OpenCV's Lab, the old method's own space) from the matched face to its
  source inside the mask, for no match, the Lab match and the opponent match;
- the CPU ms of one face's match (statistics and the paste's affine over the crop), for both, and their ratio.

The Lab match is the one compose had until this bench was written: the mean and spread of each Lab channel
(OpenCV's float ``COLOR_BGR2Lab``) moved to the source's, and back with ``COLOR_Lab2BGR``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, os.environ.get("GPEN_VIDEO_CODE", str(Path(__file__).resolve().parent.parent)))

from gpen_video.align import align_faces
from gpen_video.align.compose import match_colour
from gpen_video.align.masks import feather_mask
from gpen_video.config import FacesConfig
from gpen_video.faces import FaceStage
from gpen_video.faces.detectors.mtcnn import MtcnnDetector
from gpen_video.synthetic import FaceScene, render


def lab_match(face: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The replaced method: Lab mean and spread from a ~128-px subsample, gain within 0.5..2 (8-bit in and out)."""
    step = max(1, face.shape[0] // 128)
    sub = (slice(None, None, step), slice(None, None, step))
    sub_mask = (mask[sub] > 0.5).astype(np.uint8)
    face_lab = cv2.cvtColor(face.astype(np.float32) / 255, cv2.COLOR_BGR2Lab)
    f_mean, f_std = cv2.meanStdDev(np.ascontiguousarray(face_lab[sub]), mask=sub_mask)
    s_mean, s_std = cv2.meanStdDev(cv2.cvtColor(source[sub].astype(np.float32) / 255, cv2.COLOR_BGR2Lab), mask=sub_mask)
    gain = np.clip(s_std.ravel() / np.maximum(f_std.ravel(), 1e-3), 0.5, 2.0)
    matched = (face_lab - f_mean.ravel().astype(np.float32)) * gain.astype(np.float32) + s_mean.ravel().astype(
        np.float32
    )
    return cv2.cvtColor(matched, cv2.COLOR_Lab2BGR) * 255


def changes(crop: np.ndarray):
    """What a restorer might do to a face's colour."""
    c = crop.astype(np.float64)
    yield "tint", c + np.array([12, -6, 25])
    yield "contrast", (c - 128) * 1.3 + 138
    yield "gamma", 255 * (c / 255) ** 0.7
    yield "blur+tint", cv2.GaussianBlur(c, (0, 0), 1.5) + np.array([-10, 5, 15])
    yield "desaturated", 0.5 * c + 0.5 * c.mean(axis=2, keepdims=True)
    yield "warm+dark", c * np.array([0.8, 0.95, 1.1])


def delta_e(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> float:
    lab = [cv2.cvtColor((np.clip(x, 0, 255) / 255).astype(np.float32), cv2.COLOR_BGR2Lab) for x in (a, b)]
    return float(np.linalg.norm(lab[0] - lab[1], axis=-1)[inside].mean())


def cpu_ms(match, rounds: int) -> float:
    """Best of ``rounds``: CPU ms of one call."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        match()
        best = min(best, 1000 * (time.process_time() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="crop side (px)")
    parser.add_argument("--rounds", type=int, default=20, help="timing rounds per face (best kept)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    frame = render(FaceScene(width=1280, height=720), 0)
    stage = FaceStage(FacesConfig(min_face=10, min_track_length=1, smooth=False), detector=MtcnnDetector())
    faces = (stage.push(0, frame.image) + stage.flush())[0].faces
    crops = align_faces(frame.image, faces, args.size).crops
    mask = np.array(feather_mask(args.size, 0.04, 0.08))
    inside = mask > 0.5
    errors: dict[tuple[str, str], list[float]] = {}
    for crop in crops:
        for name, changed in changes(crop):
            face = np.clip(changed, 0, 255).astype(np.uint8)
            for method, out in (
                ("none", face.astype(np.float64)),
                ("Lab", lab_match(face, crop, mask)),
                ("opponent", match_colour(face, crop, mask, 255.0)),
            ):
                errors.setdefault((name, method), []).append(delta_e(out, crop, inside))
    print(f"{len(crops)} faces of t1.jpg at {args.size} px; mean ΔE76 to the source inside the mask")
    print(f"   {'change':12} {'no match':>9} {'Lab':>7} {'opponent':>9}")
    for name, _ in changes(crops[0]):
        row = [np.mean(errors[(name, m)]) for m in ("none", "Lab", "opponent")]
        print(f"   {name:12} {row[0]:9.2f} {row[1]:7.2f} {row[2]:9.2f}")
    face = np.clip(crops[0].astype(int) + np.array([12, -6, 25]), 0, 255).astype(np.uint8)
    lab = np.median([cpu_ms(lambda c=c: lab_match(face, c, mask), args.rounds) for c in crops])
    opponent = np.median([cpu_ms(lambda c=c: match_colour(face, c, mask, 255.0), args.rounds) for c in crops])
    print(f"CPU ms a face (one thread): Lab {lab:.2f}, opponent {opponent:.2f}: {lab / opponent:.1f}x less")


if __name__ == "__main__":
    main()
