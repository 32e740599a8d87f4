"""Generate the bundled sample clip: real faces (insightface's t1.jpg), pan/zoom, light degradation, a tone.

    python samples/make_sample.py            # -> samples/sample.mp4 (4 s, 1280×720, 24 fps, H.264 + AAC)

Nothing large is committed: the clip is rebuilt from the photo that ships inside the insightface wheel.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

from gpen_video.synthetic import AudioTrack, ClipSpec, FaceScene, write_clip

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=HERE / "sample.mp4")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    rate = Fraction(24)
    spec = ClipSpec(
        scene=FaceScene(
            width=1280, height=720, frames=int(args.seconds * rate), zoom=(1.0, 1.25), pan=(60.3, -18.6),
            wobble=1.5, degrade=0.6, seed=1,
        ),
        codec="libx264",
        pix_fmt="yuv420p",
        rate=rate,
        codec_options={"crf": "20", "preset": "medium"},
        audio=(AudioTrack(codec="aac", frequency=440.0),),
    )  # fmt: skip
    write_clip(args.output, spec)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
