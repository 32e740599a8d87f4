"""GPEN's peak memory per face, measured on PyTorch's meta device (no GPU, no memory, a few seconds).

    python bench/footprint.py [--sizes 512 1024 2048] [--channels-last]

Prints, for each released size (channel multiplier 2, narrow 1) and precision, the bytes each face adds to a
restore's peak (per output pixel and in all) and the bytes that do not depend on the batch: the figures the
CUDA restorer sizes its automatic batch by (``gpen_video.models.footprint``, ``TorchRestorer.preferred_batch``).
"""

from __future__ import annotations

import argparse

import torch

from gpen_video.models.footprint import HEADROOM
from gpen_video.models.torch_backend import meta_footprint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--channels-last", action="store_true", help="the layout CUDA runs in")
    args = parser.parse_args(argv)
    print(f"size  precision  B/px/face  MB/face  fixed MB  faces in 70 GiB (x{HEADROOM} headroom)")
    for size in args.sizes:
        for name, dtype in (("fp32", torch.float32), ("bf16/fp16", torch.bfloat16)):
            footprint = meta_footprint((size, 512, 8, 2, 1.0), dtype, args.channels_last)
            fits = int(70 * 2**30 // (footprint.per_face * HEADROOM))
            print(
                f"{size:4d}  {name:9s}  {footprint.per_face / size**2:9.0f}  {footprint.per_face / 1e6:7.0f}"
                f"  {footprint.fixed / 1e6:8.0f}  {fits}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
