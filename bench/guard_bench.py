"""The identity guard (issue 21): what the face recogniser costs per face-frame beside the faces stage, and which
tracks and frames its sampling (``identity.every``) finds.

    python bench/guard_bench.py [--frames 48] [--case six-720p] [--every 1,2,4,8] [--burst 20:24] [--crop 512]

The clip is host_bench's case (t1.jpg's six faces under a slow pan and zoom, H.264). The restorer changes every
face, as a real one does (a blur, sigma 1.5: the guard measures every sampled face; an unchanged crop costs it no
recogniser call), and on the frames of ``--burst`` (first:end) pastes another t1.jpg person over face A (photo face
2 by x), aligned to the same template: an invented face for a few frames. Face A's frames are counted in the order
its crops reach the restorer (the batcher keeps frame order), so the burst is on those frames of A's track.

For each ``--every`` N the run goes once with the stages one after another (``run(threaded=False)``: each stage's
process CPU time is its own, as host_bench's CPU mode) and prints: CPU ms per face-frame of the faces stage and of
the guard, the guard's per measured face (two embeddings: source and restored), and the tracks and frames the
report's identity section names. The truth is the burst: A's track on those frames, no other track.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, os.environ.get("GPEN_VIDEO_CODE", str(Path(__file__).resolve().parent.parent)))

from gpen_video.config import load_config
from gpen_video.faces.detectors import create_detector
from gpen_video.faces.geometry import face_to_crop
from gpen_video.models.registry import resolve_template
from gpen_video.restore.restorer import Restorer
from gpen_video.run.job import RestoreJob
from gpen_video.run.restore import run_restore
from gpen_video.synthetic import faces_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host_bench import CASES, write_case

FACE_A, FACE_B = 2, 5  # photo faces by x (0 leftmost)


class BurstSwap(Restorer):
    """Every crop blurred; face A's crops on the burst's frames (counted along A) replaced by face B's."""

    name = "blur, face A swapped on a burst"

    def __init__(self, size: int, template: str, burst: range) -> None:
        self.size = size
        photo = faces_image()
        found = create_detector("mtcnn").detect(photo)
        order = np.argsort(found.landmarks[:, :, 0].mean(1))
        crops = [cv2.warpAffine(photo, face_to_crop(found.landmarks[k], size, template), (size, size),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT) for k in order]  # fmt: skip
        self.references = np.stack([self._small(c) for c in crops])
        self.face_b = crops[FACE_B]
        self.burst = burst
        self.a_seen = 0

    @staticmethod
    def _small(crop: np.ndarray) -> np.ndarray:
        return cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)

    def restore(self, batch: np.ndarray) -> np.ndarray:
        out = np.stack([cv2.GaussianBlur(c, (0, 0), 1.5) for c in batch])
        for k, crop in enumerate(batch):
            if not crop.any():  # the batcher's padding
                continue
            if int(np.argmin(np.abs(self.references - self._small(crop)).mean(axis=(1, 2, 3)))) == FACE_A:
                if self.a_seen in self.burst:
                    out[k] = self.face_b
                self.a_seen += 1
        return out


def run_every(clip: Path, out: Path, every: int, args: argparse.Namespace) -> None:
    config = load_config("default", {"output.overwrite": True, "output.video_codec": "libx264",
                                     "output.preset": "veryfast", "identity.guard": "warn",
                                     "identity.every": every})  # fmt: skip
    template = resolve_template(config.align.template, config.restore.model)
    restorer = BurstSwap(args.crop, template, range(*args.burst))
    report = run_restore(RestoreJob(clip, out, config, restorer=restorer), threaded=False)
    identity = report.identity
    assert identity is not None
    faces = report.faces.faces_restored if report.faces else 0
    cpu = report.stage_cpu_seconds
    faces_ms, guard_ms = 1000 * cpu["faces"] / faces, 1000 * cpu["guard"] / faces
    per_check = 1000 * cpu["guard"] / max(identity.faces_checked, 1)
    found = "; ".join(f"track {t.id} frames {t.over}" for t in identity.tracks_over) or "none"
    print(f"   every {every:2}: faces {faces_ms:6.1f}  guard {guard_ms:6.1f} CPU ms/face-frame "
          f"({guard_ms / faces_ms:4.2f}x faces; {per_check:5.1f} ms a measured face, {identity.faces_checked} "
          f"measured)  flagged: {found}")  # fmt: skip


def main() -> None:
    args = parse_args()
    case = next(c for c in CASES if c.name == args.case)
    print(f"{os.cpu_count()} cores; {case.name}, {args.frames} frames; {args.crop}-px crops; face A swapped on its "
          f"frames {args.burst[0]}-{args.burst[1] - 1}; CPU ms with the stages one after another")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_case(Path(tmp) / f"{case.name}.mp4", case, args.frames)
        for every in args.every:
            run_every(clip, Path(tmp) / "out.mp4", every, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="frames of the clip")
    parser.add_argument("--case", default="six-720p", help="host_bench's case (six-720p, six-1080p, two-4k, ...)")
    parser.add_argument("--every", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--burst", type=lambda t: tuple(int(v) for v in t.split(":")), default=(20, 24),
                        help="first:end frames of face A swapped (counted along its track)")  # fmt: skip
    parser.add_argument("--crop", type=int, default=512, help="the restorer's crop side")
    return parser.parse_args()


if __name__ == "__main__":
    main()
