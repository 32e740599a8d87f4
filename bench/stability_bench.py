"""Landmark accuracy and crop stability on clips with known camera trajectories, against raw detection.

    python bench/stability_bench.py [--frames 36] [--width 960 --height 540] [--baseline bc608b2|DIR]

Clips: t1.jpg's six faces filmed along a known similarity per frame (``gpen_video.synthetic``):
slow sway with a breathing zoom, hand-held shake (random walk, 3 px a frame), fast pan (20 px a frame),
1.5× zoom-in over 48 frames, ±10° roll about a face; degraded (blur, noise, JPEG). For each clip and each
of raw per-frame detection (MTCNN on every frame), ``--no-smooth`` and the default:

- error: RMS distance (frame px) of the reported landmarks from the truth, i.e. the photo's landmarks
  carried through the known trajectory, after removing each face's constant offset (the detector's own
  bias on this face, the same for every method);
- jitter: frame-to-frame change of the alignment (photo → 512 crop) applied to the template points,
  RMS in crop px, with the true camera motion taken out (a perfect tracker gives 0);
- both as ratios to raw; detector calls per frame.

Then the faces stage's ms per frame on a 1080p clip, today's code (``--baseline``: a commit, unpacked with
``git archive`` by ``bench/baseline.py``, or a folder) timed in a subprocess in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpen_video.config import FacesConfig  # noqa: E402
from gpen_video.faces import FaceStage  # noqa: E402
from gpen_video.faces.detectors.mtcnn import MtcnnDetector  # noqa: E402
from gpen_video.synthetic import PHOTO_FACE_BOXES, FaceScene, faces_image, frames, trajectory_accuracy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/baseline.py
from baseline import baseline_tree  # noqa: E402

PATHS = ("sway", "shake", "pan", "zoomin", "roll")
CLIP_FPS = 24.0


def photo_truth(detector: MtcnnDetector) -> np.ndarray:
    found = detector.detect(faces_image())
    centres = np.array([[0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3])] for b in PHOTO_FACE_BOXES])
    out = []
    for c in centres:
        k = int(np.argmin(np.linalg.norm(found.landmarks.mean(1) - c, axis=1)))
        out.append(found.landmarks[k])
    return np.asarray(out, np.float64)


def measure(per_frame: list[list[np.ndarray]], clip: list, truth: np.ndarray) -> tuple[float, float, int]:
    return trajectory_accuracy(per_frame, clip, truth)


def run_stage(config: FacesConfig, detector: MtcnnDetector, clip: list) -> tuple[list[list[np.ndarray]], dict, float]:
    stage = FaceStage(config, detector=detector)
    out = []
    start = time.perf_counter()
    for frame in clip:
        out += stage.push(frame.index, frame.image, pts_seconds=frame.index / CLIP_FPS)  # as a run's frames come
    out += stage.flush()
    seconds = time.perf_counter() - start
    per_frame = [[f.landmarks5 for f in r.faces] for r in sorted(out, key=lambda r: r.index)]
    return per_frame, stage.summary().to_dict(), seconds


def run_raw(detector: MtcnnDetector, clip: list) -> list[list[np.ndarray]]:
    return [list(detector.detect(frame.image, min_size=20).landmarks) for frame in clip]


_BASELINE_SCRIPT = """
import sys, time, json
from gpen_video.config import FacesConfig
from gpen_video.faces import FaceStage
from gpen_video.faces.detectors.mtcnn import MtcnnDetector
from gpen_video.synthetic import FaceScene, frames

w, h, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
det = MtcnnDetector(threads=1)
stage = FaceStage(FacesConfig(detector="mtcnn"), detector=det)
seconds = 0.0
for frame in frames(FaceScene(width=w, height=h, frames=n, degrade=0.5, seed=1, wobble=3.0)):
    if frame.index == 0:
        det.detect(frame.image[:200, :200])  # warm up
    t = time.perf_counter()
    stage.push(frame.index, frame.image)
    seconds += time.perf_counter() - t
t = time.perf_counter()
stage.flush()
seconds += time.perf_counter() - t
print(json.dumps({"ms_per_frame": 1000 * seconds / n, "tracks": len(stage.summary().to_dict()["tracks"])}))
"""


def time_stage(root: Path, width: int, height: int, frames_n: int) -> dict:
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", _BASELINE_SCRIPT, str(width), str(height), str(frames_n)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=str(root),
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=540)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument(
        "--baseline", default="bc608b2", help="the code to compare with: a commit or a folder ('' for none)"
    )
    parser.add_argument("--timing-frames", type=int, default=96, help="frames of the timed clips (one shot); 0: none")
    args = parser.parse_args()

    detector = MtcnnDetector(threads=1)
    truth = photo_truth(detector)
    config = FacesConfig(detector="mtcnn")
    print(f"clips {args.width}x{args.height}, {args.frames} frames, degraded; error frame px, jitter crop px @512")
    print(f"{'clip':8} {'method':10} {'error':>7} {'ratio':>6} {'jitter':>7} {'ratio':>6} {'faces':>5} {'det/fr':>6}")
    for path in [p for p in args.paths.split(",") if p]:
        scene = FaceScene(width=args.width, height=args.height, frames=args.frames, degrade=0.6, seed=4, path=path)
        clip = list(frames(scene))
        raw_err, raw_jit, raw_n = measure(run_raw(detector, clip), clip, truth)
        print(f"{path:8} {'raw':10} {raw_err:7.3f} {1:6.2f} {raw_jit:7.3f} {1:6.2f} {raw_n:5d} {1:6.2f}")
        variants = (
            ("no-smooth", FacesConfig(**{**config.__dict__, "smooth": False})),
            ("default", config),
            ("similarity", FacesConfig(**{**config.__dict__, "smooth_target": "similarity"})),
            # sync frames (the tracks start afresh, smoothed across the seam): never, and every second
            ("sync-off", FacesConfig(**{**config.__dict__, "sync_seconds": 0.0})),
            ("sync-1s", FacesConfig(**{**config.__dict__, "sync_seconds": 1.0})),
        )
        for name, cfg in variants:
            per_frame, report, _ = run_stage(cfg, detector, clip)
            err, jit, n = measure(per_frame, clip, truth)
            calls = report["detector_calls"] / len(clip)
            print(
                f"{'':8} {name:10} {err:7.3f} {err / raw_err:6.2f} {jit:7.3f} {jit / raw_jit:6.2f} {n:5d} {calls:6.2f}"
                f"   agreement {report['motion_agreement_raw_px']} -> {report['motion_agreement_px']} px"
            )
    print()
    for width, height in ((1920, 1080), (3840, 2160)) if args.timing_frames > 0 else ():
        now = time_stage(ROOT, width, height, args.timing_frames)
        line = f"faces stage {width}x{height}: {now['ms_per_frame']:.1f} ms/frame ({now['tracks']} tracks)"
        if args.baseline:
            base = time_stage(baseline_tree(args.baseline), width, height, args.timing_frames)
            line += (
                f"; today (bc608b2) {base['ms_per_frame']:.1f} ms/frame ({base['tracks']} tracks);"
                f" ratio {now['ms_per_frame'] / base['ms_per_frame']:.2f}"
            )
        print(line)


if __name__ == "__main__":
    main()
