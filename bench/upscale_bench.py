"""Background upscaler benchmark: frames/s per upscaler at 576p ×2 and ×4, against Lanczos in the same run.

    python bench/upscale_bench.py                       # CPU: Lanczos + a small RRDBNet (16 feat, 2 blocks)
    python bench/upscale_bench.py --full                # also the released size (64 feat, 23 blocks), timed on
                                                        # one 64×64 tile and extrapolated to a 576p frame
    python bench/upscale_bench.py --device cuda --full  # GPU: whole 576p frames, fp32 and fp16, peak memory at
                                                        # 576p and 4K (tiling keeps it flat)

Weights are random (speed does not depend on them); pass ``--checkpoint`` to time a released file. Every row
prints its speed as a ratio to Lanczos measured in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from reference.rrdbnet_reference import random_official_state_dict  # noqa: E402

from gpen_video.models.rrdbnet import load_rrdbnet, model_from_state_dict  # noqa: E402
from gpen_video.models.upscale import LanczosUpscaler, RRDBUpscaler  # noqa: E402


@dataclass
class Row:
    upscaler: str
    scale: int
    input: str
    precision: str
    frames_per_s: float
    ms_per_frame: float
    ratio_vs_lanczos: float  # this upscaler's frames/s over Lanczos's, same scale, same run
    extrapolated: bool  # timed on tiles, scaled to a whole frame by pixel count
    peak_mem_mib: float | None


def timed(fn, repeat: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / repeat


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.set_grad_enabled(False)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    label = f"{args.width}x{args.height}"
    rows: list[Row] = []
    for scale in args.scales:
        lanczos = timed(lambda s=scale: LanczosUpscaler(s).upscale(frame), args.repeat * 5, torch.device("cpu"))
        rows.append(Row("lanczos", scale, label, "-", 1 / lanczos, lanczos * 1e3, 1.0, False, None))
        nets = nets_for(scale, args)
        precisions = [torch.float32] + ([torch.float16] if device.type == "cuda" else [])
        for name, model in nets:
            for precision in precisions:
                rows.append(time_net(name, model, precision, frame, scale, lanczos, args, device))
        if device.type == "cuda" and args.full:  # memory flat: 4K with the same tile size
            rows.append(time_4k(*nets[-1], scale, rng.integers(0, 256, (2160, 3840, 3), dtype=np.uint8), args, device))
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--height", type=int, default=576)
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--full", action="store_true", help="also the released RRDBNet size (64 feat, 23 blocks)")
    ap.add_argument("--checkpoint", nargs="*", default=[], help="released .pth files to time as well")
    ap.add_argument("--json", type=Path)
    return ap.parse_args(argv)


def nets_for(scale: int, args: argparse.Namespace) -> list[tuple[str, torch.nn.Module]]:
    """The RRDBNets timed at ``scale``: the small one, the released size with ``--full``, the checkpoints of it."""
    nets = [("rrdbnet-small(16f,2b)", model_from_state_dict(random_official_state_dict(scale, 16, 2, 8)))]
    if args.full:
        nets.append(("rrdbnet-full(64f,23b)", model_from_state_dict(random_official_state_dict(scale, 64, 23, 32))))
    for path in args.checkpoint:
        model = load_rrdbnet(path)
        if model.scale == scale:
            nets.append((Path(path).name, model))
    return nets


def time_net(
    name: str,
    model: torch.nn.Module,
    precision: torch.dtype,
    frame: np.ndarray,
    scale: int,
    lanczos: float,
    args: argparse.Namespace,
    device: torch.device,
) -> Row:
    """One net's row: whole frames on a GPU or for the small net, else one tile scaled to the frame."""
    up = RRDBUpscaler(model, name=name, tile=args.tile, overlap=16, device=device, precision=precision)
    whole = device.type == "cuda" or "small" in name
    if whole:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sec = timed(lambda u=up: u.upscale(frame), args.repeat, device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    else:  # a 23-block net on a CPU: one 64x64 tile, scaled by pixel count (overlap cost left out)
        tile = frame[:64, :64]
        up.tile = 0
        sec = timed(lambda u=up, t=tile: u.upscale(t), 1, device) * (args.height * args.width) / 64**2
        peak = None
    prec = str(precision).removeprefix("torch.")
    label = f"{args.width}x{args.height}"
    return Row(name, scale, label, prec, 1 / sec, sec * 1e3, lanczos / sec, not whole, peak)


def time_4k(
    name: str, model: torch.nn.Module, scale: int, big: np.ndarray, args: argparse.Namespace, device: torch.device
) -> Row:
    """The last net on a 4K frame with the same tile size: its peak memory should stay flat."""
    up = RRDBUpscaler(model, name=name, tile=args.tile, overlap=16, device=device)
    torch.cuda.reset_peak_memory_stats(device)
    sec = timed(lambda u=up, b=big: u.upscale(b), 1, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    return Row(name, scale, "3840x2160", "float32", 1 / sec, sec * 1e3, float("nan"), False, peak)


def print_table(rows: list[Row]) -> None:
    head = f"{'upscaler':24} {'x':>2} {'input':>10} {'prec':>8} {'fps':>9} {'ms/frame':>10} {'vs lanczos':>11}"
    print(f"{head} {'MiB':>8}")
    for r in rows:
        mem = f"{r.peak_mem_mib:8.0f}" if r.peak_mem_mib is not None else "       -"
        ext = "*" if r.extrapolated else " "
        print(
            f"{r.upscaler:24} {r.scale:2d} {r.input:>10} {r.precision:>8} {r.frames_per_s:9.3f}{ext}"
            f"{r.ms_per_frame:10.1f} {r.ratio_vs_lanczos:11.3g} {mem}"
        )
    if any(r.extrapolated for r in rows):
        print("* timed on one 64x64 tile and scaled to the frame by pixel count")


if __name__ == "__main__":
    raise SystemExit(main())
