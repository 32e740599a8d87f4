"""GPEN model benchmark: the batched restorer, eager, per precision and batch, against baselines of the same run.

    python bench/model_bench.py                          # CPU: sizes 256 512, batches 1 4 8, fp32 + bf16
    python bench/model_bench.py --device cuda --sizes 2048 --rows fp32:1 bf16:1,2,4,8,16 fp16:1 --face
    python bench/model_bench.py --device cuda --sizes 2048 --rows bf16:4 --compile --ref-faces 0
    python bench/model_bench.py --checkpoint weights/GPEN-BFR-2048.pth --json out.json

For every size it builds the released architecture (256: channel_multiplier 1, narrow 0.5; 512 and up: 2, 1)
with random weights in the official state_dict format (the real weights cannot be downloaded everywhere; speed
does not depend on them), or loads ``--checkpoint``. It times the reference (the official per-sample grouped
convolution, one face at a time, fp32: how the official code runs; ``--ref-faces 0`` leaves it out) and then
``TorchRestorer.restore_tensor`` for each row: a precision at a batch size (``--rows fp32:1 bf16:1,2,4``, or every
``--precisions`` at every ``--batches``), eager; ``--compile`` and ``--cuda-graphs`` add those modes. Each row gives
ms/face, faces/s, the speed-up over the reference and over the first row, peak memory (CUDA), whether every output
was finite, and the max/mean difference from the reference's output (in [-1, 1] units and in uint8 levels after
the official post-processing). fp32 rows run with TF32 off (``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32``): true fp32, not the matrix units' 10-bit mode.

``--face`` also runs one real face through each precision: the largest face of insightface's ``t1.jpg``, found by
MTCNN and aligned to the GPEN template at the model's size, as the pipeline aligns faces; each precision's result
is compared with fp32's (TF32 off) by PSNR in uint8 levels.

``--jsonl FILE`` appends each row to FILE as soon as it is measured (a run stopped by a timeout keeps the rows
before it); ``--json FILE`` writes them all at the end, with the figures ``--against`` compares.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
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

from baseline import _without, compare, print_ratios  # noqa: E402
from model_helpers import random_state_dict, reference_forward  # noqa: E402

from gpen_video.models.checkpoint import load_generator  # noqa: E402
from gpen_video.models.torch_backend import (  # noqa: E402
    TorchRestorer,
    cpu_micro_batch,
    postprocess,
    preprocess,
    resolve_device,
)

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
    speedup_vs_reference: float | None  # None: no reference timed (--ref-faces 0)
    max_abs_diff: float | None  # vs the reference, output units ([-1, 1] scale)
    mean_abs_diff: float | None
    max_level_diff: int | None  # vs the reference, uint8 levels after tensor2img
    mean_level_diff: float | None
    peak_mem_mib: float | None
    cpu_ms_per_face: float | None = None  # process CPU time (all threads) per face
    finite: bool = True  # every element of the outputs looked at (the first and the last call's) is finite
    speedup_vs_first: float | None = None  # over the first batched row of the run (e.g. fp32 batch 1)
    tf32: bool | None = None  # fp32 rows: whether the matrix units' TF32 mode was allowed (never, here)
    face_psnr_db: float | None = None  # --face: this precision's result on the real face vs fp32's, uint8 PSNR (dB;
    # a result equal to fp32's: 999)
    face_max_level_diff: int | None = None


@dataclass
class Baselines:
    """What every batched row is compared with: the per-face reference (if timed), the first row, the face."""

    reference: Row | None
    reference_out: torch.Tensor | None  # (faces, 3, S, S) the reference's output for the first faces of the input
    face: torch.Tensor | None = None  # (1, 3, S, S) the aligned real face, [-1, 1] (--face)
    face_fp32: torch.Tensor | None = None  # (1, S, S, 3) uint8: fp32's result on it, TF32 off
    first: Row | None = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def true_fp32(device: torch.device) -> None:
    """fp32 as fp32 on CUDA: no TF32 in matrix products or convolutions (cuDNN allows it by default)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def tf32_allowed() -> bool:
    """Whether fp32 convolutions or matrix products may run in TF32 now. Read from the per-operator settings where
    this torch has them (2.9 on): the legacy flag raises when cuDNN's convolution and RNN settings differ, as
    they do once code sets ``torch.backends.cudnn.conv.fp32_precision`` alone."""
    backends = torch.backends
    conv = getattr(getattr(backends.cudnn, "conv", None), "fp32_precision", None)
    if conv is None:
        return bool(backends.cudnn.allow_tf32 or backends.cuda.matmul.allow_tf32)
    top = getattr(backends, "fp32_precision", "none")
    levels = ((conv, backends.cudnn.fp32_precision, top), (backends.cuda.matmul.fp32_precision, top))
    return any(next((p for p in chain if p != "none"), "ieee") == "tf32" for chain in levels)


def timeit(fn: Callable[[], object], device: torch.device, repeat: int, warmup: int) -> tuple[float, float, object]:
    """Best wall seconds and best process CPU seconds of ``fn`` over ``repeat`` runs after ``warmup`` runs, and
    the last run's result.

    The minimum, not the median: on a shared machine other work only ever adds time. CPU seconds (all
    threads) are the steadier figure on a crowded CPU: waiting for a core does not count.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times, cpu, result = [], [], None
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return min(times), min(cpu), result


def diffs(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, int, float]:
    d = (out.float().cpu() - ref.float().cpu()).abs()
    levels = (postprocess(out.cpu()).int() - postprocess(ref.cpu()).int()).abs()
    return float(d.max()), float(d.mean()), int(levels.max()), float(levels.float().mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> tuple[float, int]:
    """PSNR (dB) of two uint8 pictures and their largest level difference; 999 where they are equal (JSON has no
    infinity)."""
    d = a.cpu().int() - b.cpu().int()
    mse = float((d.float() ** 2).mean())
    return (999.0 if mse == 0 else 10 * math.log10(255**2 / mse)), int(d.abs().max())


def all_finite(*tensors: object) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if isinstance(t, torch.Tensor))


def bench_size(size: int, args: argparse.Namespace, device: torch.device, emit: Callable[[Row], None]) -> list[Row]:
    sd = state_dict_for(size, args)
    max_batch = max(b for _, batches in args.rows for b in batches)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(max_batch, 3, size, size, generator=g) * 2 - 1).to(device)
    base = Baselines(None, None)
    if args.ref_faces > 0:
        base = time_reference({k: v.to(device) for k, v in sd.items()}, x, min(args.ref_faces, max_batch), args,
                              device)  # fmt: skip
        emit(base.reference)
    if args.face:
        base.face = aligned_face(size).to(device)
    rows: list[Row] = [base.reference] if base.reference else []
    for precision, batches in args.rows:
        for mode in modes_for(args, device):
            rows += bench_restorer(sd, precision, mode, batches, x, base, args, device, emit)
    return rows


def bench_restorer(
    sd: dict[str, torch.Tensor],
    precision: str,
    mode: str,
    batches: list[int],
    x: torch.Tensor,
    base: Baselines,
    args: argparse.Namespace,
    device: torch.device,
    emit: Callable[[Row], None],
) -> list[Row]:
    """One restorer (precision, mode): its face result, then a row for each batch size."""
    size = int(x.shape[-1])
    try:
        ceiling = cpu_micro_batch(size) if args.micro_batch and device.type == "cpu" else None
        restorer = make_restorer(sd, device, precision, mode, ceiling, max(batches))
    except Exception as exc:  # a bench reports what did not work and goes on
        logging.warning("size %d %s %s: cannot build (%s)", size, precision, mode, exc)
        return []
    face = face_result(restorer, precision, base) if mode == "eager" else (None, None)  # compile: one shape only
    rows = []
    for batch in batches:
        row = time_batched(restorer, precision, mode, x[:batch], base, args, device)
        if row is None:
            continue
        row.face_psnr_db, row.face_max_level_diff = face if batch == batches[0] else (None, None)
        base.first = base.first or row
        row.speedup_vs_first = base.first.ms_per_face / row.ms_per_face
        rows.append(row)
        emit(row)
    restorer.close()
    return rows


def face_result(restorer: TorchRestorer, precision: str, base: Baselines) -> tuple[float | None, int | None]:
    """PSNR and largest level difference of ``restorer``'s result on the real face against fp32's (None: no --face,
    or no fp32 result yet). The first fp32 restorer's result is the fp32 result."""
    if base.face is None:
        return None, None
    try:
        out = postprocess(restorer.restore_tensor(base.face))
    except Exception as exc:
        logging.warning("the real face through %s failed: %s", precision, exc)
        return None, None
    if not all_finite(out.float()):
        logging.warning("the real face through %s: output NOT finite", precision)
    if precision == "fp32" and base.face_fp32 is None:
        base.face_fp32 = out.cpu()
        return None, None  # the baseline itself
    if base.face_fp32 is None:
        logging.warning("--face: no fp32 row ran before %s, so no PSNR against fp32 (put fp32 first in --rows)",
                        precision)  # fmt: skip
        return None, None
    return psnr(out, base.face_fp32)


def aligned_face(size: int) -> torch.Tensor:
    """The largest face of insightface's t1.jpg, aligned to the GPEN template at ``size``: (1, 3, S, S) in [-1, 1]."""
    from gpen_video.align import warp_cpu
    from gpen_video.faces.detectors.mtcnn import MtcnnDetector
    from gpen_video.faces.geometry import face_to_crop
    from gpen_video.synthetic import faces_image

    image = faces_image()
    found = MtcnnDetector(threads=2).detect(image)
    if len(found) == 0:
        raise SystemExit("--face: MTCNN found no face in t1.jpg")
    spans = found.landmarks[:, :, 0].max(1) - found.landmarks[:, :, 0].min(1)
    landmarks = found.landmarks[int(spans.argmax())]
    crop = warp_cpu(image, face_to_crop(landmarks, size), size)
    logging.info("real face: the largest of %d in t1.jpg, aligned to the GPEN template at %d px", len(found), size)
    return preprocess(torch.from_numpy(crop[None].copy()))


def state_dict_for(size: int, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """The weights benched at ``size``: ``--checkpoint``'s, else random ones of the released architecture."""
    if args.checkpoint:
        model, config = load_generator(args.checkpoint)
        if config.size != size:
            raise SystemExit(f"{args.checkpoint} is a {config.size}-px model; run with --sizes {config.size}")
        return {k: v.clone() for k, v in model.state_dict().items()}
    cm, narrow = (1, args.narrow) if args.narrow else RELEASED.get(size, (1, 0.5) if size < 256 else (2, 1.0))
    logging.info("GPEN-%d: random weights in the official format (channel_multiplier %s, narrow %s), not the "
                 "released ones: speeds hold, pictures do not", size, cm, narrow)  # fmt: skip
    return random_state_dict(size, cm, narrow, 8, seed=size)


def time_reference(
    sd_dev: dict[str, torch.Tensor], x: torch.Tensor, n_ref: int, args: argparse.Namespace, device: torch.device
) -> Baselines:
    """The reference: one face at a time, fp32 grouped conv, on the first ``n_ref`` faces."""
    size = int(x.shape[-1])
    with torch.no_grad():
        ref_out = torch.cat([reference_forward(sd_dev, x[i : i + 1]) for i in range(n_ref)])
        per_face = lambda: [reference_forward(sd_dev, x[i : i + 1]) for i in range(n_ref)]  # noqa: E731
        ref_s, ref_cpu, _ = timeit(per_face, device, args.repeat, 1)
    ref_ms = ref_s / n_ref * 1000
    ref_cpu_ms = ref_cpu / n_ref * 1000
    row = Row(size, "reference", "fp32", 1, "eager", 1, ref_ms, 1000 / ref_ms, 1.0, 0, 0, 0, 0, None, ref_cpu_ms,
              finite=all_finite(ref_out), tf32=tf32_allowed() if device.type == "cuda" else None)  # fmt: skip
    return Baselines(row, ref_out)


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
    base: Baselines,
    args: argparse.Namespace,
    device: torch.device,
) -> Row | None:
    """The batched restorer's row for the batch ``xb``; None (after a warning) if it failed."""
    size, batch = int(xb.shape[-1]), len(xb)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    call = step(restorer, xb, mode)
    try:
        out = call().clone()  # CUDA-graph outputs are overwritten by the next replay
        seconds, cpu_seconds, last = timeit(call, device, args.repeat, args.warmup)
    except Exception as exc:
        logging.warning("size %d %s %s batch %d failed: %s", size, precision, mode, batch, exc)
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    ms = seconds / batch * 1000
    row = Row(size, "batched", precision, batch, mode, restorer.backoff.max_batch, ms, 1000 / ms, None, None, None,
              None, None, peak, cpu_seconds / batch * 1000, finite=all_finite(out, last))  # fmt: skip
    if precision == "fp32" and device.type == "cuda":
        row.tf32 = tf32_allowed()
    if base.reference is not None and base.reference_out is not None:
        m = min(batch, len(base.reference_out))
        row.max_abs_diff, row.mean_abs_diff, row.max_level_diff, row.mean_level_diff = diffs(
            out[:m], base.reference_out[:m]
        )
        row.speedup_vs_reference = base.reference.ms_per_face / ms
    return row


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


def describe(row: Row) -> str:
    peak = f" peak {row.peak_mem_mib:,.0f} MiB" if row.peak_mem_mib is not None else ""
    text = (f"{row.size:5d} {row.impl:9s} {row.precision:4s} b={row.batch:<2d} (micro {row.micro_batch or '-'}) "
            f"{row.mode:10s} {row.ms_per_face:9.1f} ms/face {row.faces_per_s:7.2f} faces/s")  # fmt: skip
    if row.speedup_vs_first is not None:
        text += f"  x{row.speedup_vs_first:.2f} vs first row"
    if row.speedup_vs_reference is not None and row.impl == "batched":
        text += f"  x{row.speedup_vs_reference:.2f} vs reference"
    if row.max_abs_diff is not None and row.impl == "batched":
        text += (f"  ref max|d| {row.max_abs_diff:.2e} mean|d| {row.mean_abs_diff:.2e} levels max "
                 f"{row.max_level_diff} mean {row.mean_level_diff:.3f}")  # fmt: skip
    if row.face_psnr_db is not None:
        text += f"  face vs fp32: PSNR {row.face_psnr_db:.1f} dB, max {row.face_max_level_diff} levels"
    if row.tf32 is not None:
        text += f"  TF32 {'on' if row.tf32 else 'off'}"
    return text + peak + ("" if row.finite else "  OUTPUT NOT FINITE")


def parse_rows(args: argparse.Namespace, gpu: bool) -> list[tuple[str, list[int]]]:
    """``--rows fp32:1 bf16:1,2`` as [(precision, batches)], or every ``--precisions`` at every ``--batches``."""
    if args.rows:
        rows = []
        for item in args.rows:
            precision, _, batches = item.partition(":")
            if precision not in ("fp32", "bf16", "fp16") or not batches:
                raise SystemExit(f"--rows {item}: expected PRECISION:B[,B...] with fp32, bf16 or fp16")
            rows.append((precision, [int(b) for b in batches.split(",")]))
        return rows
    batches = args.batches or ([1, 2, 4, 8, 16] if gpu else [1, 4, 8])
    precisions = args.precisions or (["fp32", "bf16", "fp16"] if gpu else ["fp32", "bf16"])
    return [(p, batches) for p in precisions]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--sizes", type=int, nargs="+", help="default: 256 512 on CPU, 2048 on CUDA")
    parser.add_argument("--rows", nargs="+", help="PRECISION:B[,B...] each, in this order (instead of the two below)")
    parser.add_argument("--batches", type=int, nargs="+", help="default: 1 4 8 on CPU, 1 2 4 8 16 on CUDA")
    parser.add_argument("--precisions", nargs="+", help="default: fp32 bf16 (+ fp16 on CUDA)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (after eager)")
    parser.add_argument("--cuda-graphs", action="store_true", help="also time CUDA graphs (after eager)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms (off: as run)")
    parser.add_argument("--face", action="store_true", help="PSNR of each precision vs fp32 on a real aligned face")
    parser.add_argument("--checkpoint", help="use this GPEN checkpoint instead of random weights (one size)")
    parser.add_argument("--narrow", type=float, help="random weights, channel_multiplier 1 and this narrow (a quick "
                        "check of the bench itself, e.g. 0.125 for CPU runs in bf16, which are slow)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ref-faces", type=int, default=4, help="faces the per-face reference is timed on (0: none)")
    parser.add_argument(
        "--micro-batch", action="store_true", help="on a CPU, split batches into cpu_micro_batch(size) per forward"
    )
    parser.add_argument("--against", help="also run an older version (commit or folder) and print new/old ratios")
    parser.add_argument("--rounds", type=int, default=2, help="with --against: alternating runs of each version")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    parser.add_argument("--json", help="write the rows here at the end")
    parser.add_argument("--jsonl", help="append each row here as soon as it is measured")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.against:
        raw = _without(sys.argv[1:] if argv is None else argv, {"--jsonl"})
        figures = compare(Path(__file__).resolve(), raw, args.against, args.rounds, lambda name: " ms/" not in name)
        print_ratios(figures, args.against, "faces/s")
        return 0
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    args.sizes = args.sizes or ([2048] if gpu else [256, 512])
    args.rows = parse_rows(args, gpu)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    true_fp32(device)  # for every fp32 run of the bench; bf16 and fp16 do not look at these flags
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    logging.info("device: %s, torch %s, cuDNN benchmark %s", name, torch.__version__, args.cudnn_benchmark)

    def emit(row: Row) -> None:
        logging.info(describe(row))
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps({"bench": "model", "device": name, **asdict(row)}) + "\n")

    rows = []
    for size in args.sizes:
        rows += bench_size(size, args, device, emit)
    if args.json:
        write_json(Path(args.json), name, rows, gpu)
    return 0 if all(r.finite for r in rows) else 1


def write_json(path: Path, device: str, rows: list[Row], gpu: bool) -> None:
    figures = {_figure_name(r): r.faces_per_s for r in rows}
    if not gpu:
        figures.update({_figure_name(r).replace("faces/s", "CPU ms/face"): r.cpu_ms_per_face for r in rows})
    path.write_text(json.dumps({"device": device, "rows": [asdict(r) for r in rows], "figures": figures}, indent=1))


def _figure_name(row: Row) -> str:
    if row.impl == "reference":  # tests/model_helpers: the same code in both versions
        return f"{row.size}px reference faces/s (same code: noise)"
    return f"{row.size}px {row.precision} batch {row.batch} {row.mode} faces/s"


if __name__ == "__main__":
    sys.exit(main())
