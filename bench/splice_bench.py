"""The encoder's splice (``io.splice.splice_composed``) told where compose pasted (``ComposeResult.regions``),
against the same splice looking over the whole paste mask, in the same run.

    python bench/splice_bench.py [--rounds 20]

The six faces of t1.jpg in a 1080p frame and the two-shot in a 4K frame (``synthetic.FaceScene``) are found by
the faces stage, cut at 512 px, pasted back unchanged by ``align.compose.compose`` (an identity restorer), and
spliced into the yuv420p source frame both ways. It prints, per frame, the CPU ms of each way (one thread, best
of ``--rounds``) and their ratio, and checks that both give the same samples.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, os.environ.get("GPEN_VIDEO_CODE", str(Path(__file__).resolve().parent.parent)))

from gpen_video.align import align_faces, compose
from gpen_video.config import ComposeConfig, FacesConfig
from gpen_video.faces import FaceStage
from gpen_video.faces.detectors.mtcnn import MtcnnDetector
from gpen_video.io.colour import colour_of_frame, to_working
from gpen_video.io.splice import frame_samples, splice_composed
from gpen_video.synthetic import TWO_FACES, FaceScene, render

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colour_match_bench import cpu_ms  # best of N rounds: CPU ms of one call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timing rounds of each way (best kept)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print("splice of one composed frame, CPU ms (one thread): over the whole mask, inside compose's regions")
    for name, scene in (
        ("six faces 1920x1080", FaceScene(width=1920, height=1080)),
        ("two faces 3840x2160", FaceScene(width=3840, height=2160, photo_region=TWO_FACES)),
    ):
        picture = render(scene, 0).image
        source = av.VideoFrame.from_ndarray(picture, format="bgr24").reformat(format="yuv420p")
        colour = colour_of_frame(source)
        image = to_working(source, colour)
        stage = FaceStage(FacesConfig(min_track_length=1, smooth=False), detector=MtcnnDetector())
        faces = (stage.push(0, image) + stage.flush())[0].faces
        batch = align_faces(image, faces, 512)
        result = compose(image, batch.crops, batch, ComposeConfig())
        whole = splice_composed(source, result.image, result.mask, colour, 0)
        inside = splice_composed(source, result.image, result.mask, colour, 0, result.regions)
        same = all(np.array_equal(a, b) for a, b in zip(frame_samples(whole), frame_samples(inside), strict=True))
        splice = partial(splice_composed, source, result.image, result.mask, colour, 0)
        old, new = cpu_ms(splice, args.rounds), cpu_ms(partial(splice, result.regions), args.rounds)
        print(f"   {name}, {len(faces)} faces: whole mask {old:6.2f}  regions {new:6.2f}  {old / new:4.2f}x less"
              f"{'' if same else '  (SAMPLES DIFFER)'}")  # fmt: skip


if __name__ == "__main__":
    main()
