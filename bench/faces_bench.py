"""Faces-stage throughput: detect+track (key frames + refinement) vs. the full detector on every frame.

    python bench/faces_bench.py [--frames 48] [--width 1920 --height 1080] [--threads 0]

Renders a synthetic 1080p clip with the six real faces of insightface's t1.jpg under a slow pan/zoom
and mild degradation, then times (a) ``FaceStage`` (scene cuts, key-frame detection, per-frame ONet
refinement, zero-phase smoothing) and (b) the full detector (on the same downscaled copy the stage
uses) on every frame. Prints frames/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpen_video.config import FacesConfig
from gpen_video.faces import FaceStage
from gpen_video.faces.mtcnn import MtcnnDetector
from gpen_video.synthetic import FaceScene, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: a quarter of the cores)")
    parser.add_argument("--min-face", type=int, default=FacesConfig.min_face, help="smallest eye-mouth distance (px)")
    args = parser.parse_args()

    scene = FaceScene(width=args.width, height=args.height, frames=args.frames, degrade=0.5, seed=1)
    clip = [f.image for f in frames(scene)]
    config = FacesConfig(detector="mtcnn", min_face=args.min_face)
    detector = MtcnnDetector(threads=args.threads)
    detector.detect(cv2.resize(clip[0], (320, 180)))  # warm up ONNX Runtime

    stage = FaceStage(config, detector=detector)
    start = time.perf_counter()
    released = 0
    for index, image in enumerate(clip):
        released += len(stage.push(index, image))
    released += len(stage.flush())
    tracked_s = time.perf_counter() - start
    report = stage.report()

    scale = min(1.0, config.detect_size / max(args.width, args.height))
    small_size = (round(args.width * scale), round(args.height * scale))
    min_size = max(12, int(1.8 * config.min_face * scale))
    start = time.perf_counter()
    found = 0
    for image in clip:
        small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA) if scale < 1 else image
        found += len(detector.detect(small, min_size=min_size))
    every_s = time.perf_counter() - start

    n = len(clip)
    print(f"clip: {n} frames {args.width}x{args.height}, detector mtcnn at {small_size[0]}x{small_size[1]}")
    print(
        f"detect+track : {n / tracked_s:7.2f} frames/s  ({report['detector_calls']} full detections, "
        f"{len(report['tracks'])} tracks, jitter {report['jitter_raw_px']} -> {report['jitter_smoothed_px']} px)"
    )
    print(f"detect every : {n / every_s:7.2f} frames/s  ({found / n:.1f} faces/frame)")
    print(f"speed-up     : {every_s / tracked_s:7.2f}x")
    assert released == n


if __name__ == "__main__":
    main()
