"""GPEN model benchmark: batched restorer vs the per-face grouped-conv reference, same weights, same run.

    python bench/model_bench.py                          # CPU: sizes 256 512, batches 1 4 8, fp32 + bf16
    python bench/model_bench.py --sizes 2048 --batches 1 2 4 8 --precisions fp32 bf16 fp16 --compile
    python bench/model_bench.py --checkpoint weights/GPEN-BFR-2048.pth --json out.json

For every size it builds the released architecture (256: channel_multiplier 1, narrow 0.5; 512 and up: 2, 1)
with random weights (or loads ``--checkpoint``), times the reference (the official per-sample grouped
convolution, one face at a time, fp32 — how the official code runs) and then ``TorchRestorer.restore_tensor``
at each batch size and precision. It reports faces/s, ms/face, the speed-up over the reference and the
max/mean abs difference of the output (in [-1, 1] units and in uint8 levels after the official
post-processing). On CUDA it also reports peak memory and tries ``torch.compile`` and CUDA graphs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("GPEN_VIDEO_CODE", str(ROOT)))  # this checkout, or the one --against runs
sys.path.insert(1, str(ROOT / "tests"))  # the independent per-face reference lives with the tests
sys.path.insert(2, str(ROOT / "bench"))

from baseline import compare, print_ratios  # noqa: E402
from model_helpers import random_state_dict, reference_forward  # noqa: E402

from gpen_video.models.checkpoint import load_generator  # noqa: E402
from gpen_video.models.torch_backend import TorchRestorer, cpu_micro_batch, postprocess, resolve_device  # noqa: E402

RELEASED = {256: (1, 0.5), 512: (2, 1.0), 1024: (2, 1.0), 2048: (2, 1.0)}


@dataclass
class Row:
    size: int
    impl: str  # reference | batched
    precision: str
    batch: int
    mode: str  # eager | compile | cudagraphs
    micro_batch: int | None  # a ceiling on faces per forward (--micro-batch on a CPU); None: the whole batch
    ms_per_face: float
    faces_per_s: float
    speedup_vs_reference: float
    max_abs_diff: float  # vs the reference, output units ([-1, 1] scale)
    mean_abs_diff: float
    max_level_diff: int  # vs the reference, uint8 levels after tensor2img
    mean_level_diff: float
    peak_mem_mib: float | None
    cpu_ms_per_face: float | None = None  # process CPU time (all threads) per face


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], object], device: torch.device, repeat: int, warmup: int) -> tuple[float, float]:
    """Best wall seconds and best process CPU seconds of ``fn`` over ``repeat`` runs after ``warmup`` runs.

    The minimum, not the median: on a shared machine other work only ever adds time. CPU seconds (all
    threads) are the steadier figure on a crowded CPU: waiting for a core does not count.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times, cpu = [], []
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return min(times), min(cpu)


def diffs(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, int, float]:
    d = (out.float().cpu() - ref.float().cpu()).abs()
    levels = (postprocess(out.cpu()).int() - postprocess(ref.cpu()).int()).abs()
    return float(d.max()), float(d.mean()), int(levels.max()), float(levels.float().mean())


@dataclass
class Reference:
    """The per-face reference's row and outputs: what every batched row is timed and diffed against."""

    row: Row
    out: torch.Tensor  # (faces, 3, S, S) the reference's output for the first faces of the input


def bench_size(size: int, args: argparse.Namespace, device: torch.device) -> list[Row]:
    sd = state_dict_for(size, args)
    sd_dev = {k: v.to(device) for k, v in sd.items()}
    max_batch = max(args.batches)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(max_batch, 3, size, size, generator=g) * 2 - 1).to(device)
    reference = time_reference(sd_dev, x, min(args.ref_faces, max_batch), args, device)
    rows: list[Row] = [reference.row]
    log(reference.row)
    for precision in args.precisions:
        for mode in modes_for(args, device):
            try:
                ceiling = cpu_micro_batch(size) if args.micro_batch and device.type == "cpu" else None
                restorer = make_restorer(sd, device, precision, mode, ceiling, max_batch)
            except Exception as exc:  # a bench reports what did not work and goes on
                logging.warning("size %d %s %s: cannot build (%s)", size, precision, mode, exc)
                continue
            for batch in args.batches:
                row = time_batched(restorer, precision, mode, x[:batch], reference, args, device)
                if row is not None:
                    rows.append(row)
                    log(row)
            restorer.close()
    return rows


def state_dict_for(size: int, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """The weights benched at ``size``: ``--checkpoint``'s, else random ones of the released architecture."""
    if args.checkpoint:
        model, config = load_generator(args.checkpoint)
        if config.size != size:
            raise SystemExit(f"{args.checkpoint} is a {config.size}-px model; run with --sizes {config.size}")
        return {k: v.clone() for k, v in model.state_dict().items()}
    cm, narrow = RELEASED.get(size, (2, 1.0))
    return random_state_dict(size, cm, narrow, 8, seed=size)


def time_reference(
    sd_dev: dict[str, torch.Tensor], x: torch.Tensor, n_ref: int, args: argparse.Namespace, device: torch.device
) -> Reference:
    """The reference: one face at a time, fp32 grouped conv, on the first ``n_ref`` faces."""
    size = int(x.shape[-1])
    with torch.no_grad():
        ref_out = torch.cat([reference_forward(sd_dev, x[i : i + 1]) for i in range(n_ref)])
        per_face = lambda: [reference_forward(sd_dev, x[i : i + 1]) for i in range(n_ref)]  # noqa: E731
        ref_s, ref_cpu = timeit(per_face, device, args.repeat, 1)
    ref_ms = ref_s / n_ref * 1000
    ref_cpu_ms = ref_cpu / n_ref * 1000
    row = Row(size, "reference", "fp32", 1, "eager", 1, ref_ms, 1000 / ref_ms, 1.0, 0, 0, 0, 0, None, ref_cpu_ms)
    return Reference(row, ref_out)


def modes_for(args: argparse.Namespace, device: torch.device) -> list[str]:
    modes = ["eager"]
    if args.compile:
        modes.append("compile")
    if args.cuda_graphs and device.type == "cuda":
        modes.append("cudagraphs")
    return modes


def time_batched(
    restorer: TorchRestorer,
    precision: str,
    mode: str,
    xb: torch.Tensor,
    reference: Reference,
    args: argparse.Namespace,
    device: torch.device,
) -> Row | None:
    """The batched restorer's row for the batch ``xb``; None (after a warning) if it failed."""
    size, batch = reference.row.size, len(xb)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    call = step(restorer, xb, mode)
    try:
        out = call().clone()  # CUDA-graph outputs are overwritten by the next replay
        seconds, cpu_seconds = timeit(call, device, args.repeat, args.warmup)
    except Exception as exc:
        logging.warning("size %d %s %s batch %d failed: %s", size, precision, mode, batch, exc)
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    m = min(batch, len(reference.out))
    dmax, dmean, lmax, lmean = diffs(out[:m], reference.out[:m])
    ms = seconds / batch * 1000
    ref_ms = reference.row.ms_per_face
    micro = restorer.backoff.max_batch
    return Row(size, "batched", precision, batch, mode, micro, ms, 1000 / ms, ref_ms / ms, dmax, dmean, lmax, lmean,
               peak, cpu_seconds / batch * 1000)  # fmt: skip


def step(restorer: TorchRestorer, xb: torch.Tensor, mode: str) -> Callable[[], torch.Tensor]:
    def call() -> torch.Tensor:
        if mode == "cudagraphs":
            torch.compiler.cudagraph_mark_step_begin()
        return restorer.restore_tensor(xb)

    return call


def make_restorer(
    sd: dict[str, torch.Tensor], device: torch.device, precision: str, mode: str, max_batch: int | None, batch: int
) -> TorchRestorer:
    """``compile``: the restorer's buckets, compiled (on CUDA) up to ``batch`` when it is built."""
    model, _ = load_generator(sd)
    compiled = mode == "compile"
    restorer = TorchRestorer(model, device=device, precision=precision, compile=compiled, max_batch=max_batch,
                             run_batch=batch)  # fmt: skip
    if mode == "cudagraphs":
        restorer._forward = torch.compile(restorer.model, mode="reduce-overhead", dynamic=False)
    return restorer


def log(row: Row) -> None:
    peak = f" peak {row.peak_mem_mib:,.0f} MiB" if row.peak_mem_mib is not None else ""
    logging.info(
        "%5d %-9s %-4s b=%-2d (micro %s) %-10s %9.1f ms/face %7.2f faces/s  x%.2f  "
        "max|d| %.2e mean|d| %.2e  levels max %d mean %.3f%s",
        row.size,
        row.impl,
        row.precision,
        row.batch,
        row.micro_batch or "-",
        row.mode,
        row.ms_per_face,
        row.faces_per_s,
        row.speedup_vs_reference,
        row.max_abs_diff,
        row.mean_abs_diff,
        row.max_level_diff,
        row.mean_level_diff,
        peak,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--sizes", type=int, nargs="+", help="default: 256 512 on CPU, 2048 on CUDA")
    parser.add_argument("--batches", type=int, nargs="+", help="default: 1 4 8 on CPU, 1 2 4 8 16 on CUDA")
    parser.add_argument("--precisions", nargs="+", help="default: fp32 bf16 (+ fp16 on CUDA)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (default on CUDA)")
    parser.add_argument("--cuda-graphs", action="store_true", help="also time CUDA graphs (default on CUDA)")
    parser.add_argument("--checkpoint", help="use this GPEN checkpoint instead of random weights (one size)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ref-faces", type=int, default=4, help="faces the per-face reference is timed on")
    parser.add_argument(
        "--micro-batch", action="store_true", help="on a CPU, split batches into cpu_micro_batch(size) per forward"
    )
    parser.add_argument("--against", help="also run an older version (commit or folder) and print new/old ratios")
    parser.add_argument("--rounds", type=int, default=2, help="with --against: alternating runs of each version")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.against:
        raw = sys.argv[1:] if argv is None else argv
        figures = compare(Path(__file__).resolve(), raw, args.against, args.rounds, lambda name: " ms/" not in name)
        print_ratios(figures, args.against, "faces/s")
        return 0
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    args.sizes = args.sizes or ([2048] if gpu else [256, 512])
    args.batches = args.batches or ([1, 2, 4, 8, 16] if gpu else [1, 4, 8])
    args.precisions = args.precisions or (["fp32", "bf16", "fp16"] if gpu else ["fp32", "bf16"])
    if gpu:
        args.compile = True
        args.cuda_graphs = True
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    logging.info("device: %s, torch %s", name, torch.__version__)
    rows = []
    for size in args.sizes:
        rows += bench_size(size, args, device)
    if args.json:
        figures = {_figure_name(r): r.faces_per_s for r in rows}
        if not gpu:
            figures.update({_figure_name(r).replace("faces/s", "CPU ms/face"): r.cpu_ms_per_face for r in rows})
        Path(args.json).write_text(json.dumps({"device": name, "rows": [asdict(r) for r in rows], "figures": figures},
                                              indent=1))  # fmt: skip
    return 0


def _figure_name(row: Row) -> str:
    if row.impl == "reference":  # tests/model_helpers: the same code in both versions
        return f"{row.size}px reference faces/s (same code: noise)"
    return f"{row.size}px {row.precision} batch {row.batch} {row.mode} faces/s"


if __name__ == "__main__":
    sys.exit(main())
