"""End-to-end throughput of the restore pipeline, with ratios against baselines measured in the same run.

    python bench/pipeline_bench.py [--frames 24] [--width 1920 --height 1080] [--gpen-size 128]
    # on a GPU: a 4K two-shot through a GPEN-2048 (random weights, the official architecture)
    python bench/pipeline_bench.py --sections 3 --scene two --width 3840 --height 2160 \\
        --gpen-size 2048 --device cuda --frames 96

1. No faces: the pipeline (identity restorer) vs a bare PyAV decode→encode loop, same encoder.
   Goal >= 0.8: what the pipeline adds to pure transcoding (probe, tracking on key frames, checks).
2. Faces in every frame, identity restorer: the threaded pipeline vs the same stages one after another
   in one thread (each stage's time there is its time alone). Goal >= 1.3; printed too: the threaded
   wall time over the slowest stage's time alone (1.0 would be "as fast as the slowest stage").
3. The same with a GPEN network: a small random one on CPU (``--gpen-size``), the official architecture
   with random weights from 512 px up (speed does not depend on the weights), or ``--model``. On CUDA
   the GPU's utilisation and memory are sampled with nvidia-smi during the threaded run: the mean over the
   whole run, and over its steady state (the busy span less its first quarter: model load, first batches).

``--jsonl FILE`` appends each section's figures to FILE as soon as they are measured; ``--clip-preset`` encodes
the synthetic input faster than x264's default (a 240-frame 4K clip is most of a short GPU run's set-up).

``--against bc608b2`` (a commit or a checkout folder) runs all of it with this checkout and with that code,
alternating ``--rounds`` times, and prints new/old for every figure (see ``bench/baseline.py``); the bare
PyAV loop is the same code in both, so its ratio shows the machine's noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, os.environ.get("GPEN_VIDEO_CODE", str(Path(__file__).resolve().parent.parent)))  # or --against's

from gpen_video.config import Config, load_config
from gpen_video.io.encoding import EncodeSettings, choose_encoding
from gpen_video.io.probe import probe
from gpen_video.run import RestoreJob, run_restore
from gpen_video.synthetic import TWO_FACES, AudioTrack, ClipSpec, FaceScene, write_clip

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import _without, compare, print_ratios
from io_bench import bare_loop

SCENES = {"six": None, "two": TWO_FACES}  # faces per frame: the whole photo, or a two-shot from it


def _clip(path: Path, args: argparse.Namespace, faces: bool) -> Path:
    scene = FaceScene(width=args.width, height=args.height, frames=args.frames, faces=faces, zoom=(1.0, 1.1),
                      photo_region=SCENES[args.scene])  # fmt: skip
    options = {"preset": args.clip_preset} if args.clip_preset else {}
    t0 = time.perf_counter()
    written = write_clip(path, ClipSpec(scene=scene, rate=Fraction(24), audio=(AudioTrack(),), codec_options=options))
    print(f"input clip {path.name}: {args.frames} frames written in {time.perf_counter() - t0:.1f} s", flush=True)
    return written


class GpuSampler:
    """GPU utilisation and peak memory while a block runs, from ``nvidia-smi --loop-ms`` (none without it)."""

    def __init__(self, period_ms: int = 200) -> None:
        self.period_ms = period_ms
        self.samples: list[tuple[float, float]] = []  # (utilisation %, memory MiB), one every period_ms
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> GpuSampler:
        binary = shutil.which("nvidia-smi")
        if binary:
            query = "--query-gpu=utilization.gpu,memory.used"
            command = [binary, query, "--format=csv,noheader,nounits", f"--loop-ms={self.period_ms}", "-i", "0"]
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                util, memory = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.samples.append((util, memory))

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()

    def steady(self) -> list[float]:
        """Utilisation samples of the steady state: from the first busy sample (>= 5 %) to the last, less the
        first quarter of that span (the model's load, cuDNN's first calls, the pipeline filling up)."""
        util = [u for u, _ in self.samples]
        busy = [i for i, u in enumerate(util) if u >= 5]
        if not busy:
            return []
        first, last = busy[0], busy[-1]
        return util[first + (last - first + 1) // 4 : last + 1]

    def figures(self) -> dict[str, float]:
        if not self.samples:
            return {}
        util, steady = [u for u, _ in self.samples], self.steady()
        out = {"gpu_util_mean_pct": sum(util) / len(util), "gpu_samples": len(util),
               "gpu_peak_memory_gib": max(m for _, m in self.samples) / 1024}  # fmt: skip
        if steady:
            out["gpu_util_steady_pct"] = sum(steady) / len(steady)
            out["gpu_steady_samples"] = len(steady)
        return out

    def describe(self) -> str:
        f = self.figures()
        if not f:
            return "GPU utilisation: not sampled (no nvidia-smi)"
        steady = f"steady state {f['gpu_util_steady_pct']:.0f} % ({f['gpu_steady_samples']} samples), " if (
            "gpu_util_steady_pct" in f) else "no steady state (never busy), "  # fmt: skip
        return (f"GPU utilisation {steady}whole run {f['gpu_util_mean_pct']:.0f} % ({f['gpu_samples']} samples "
                f"{self.period_ms} ms apart), peak memory {f['gpu_peak_memory_gib']:.1f} GiB")  # fmt: skip


def best_fps(src: Path, out: Path, config: Config, threaded: bool, repeat: int) -> tuple[float, dict]:
    """Best frames/s of ``repeat`` runs; the report gains ``cpu_cores_busy`` (process CPU time / wall)."""
    best, report, busy = 0.0, None, 0.0
    for _ in range(repeat):
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        report = run_restore(RestoreJob(src, out, config), threaded=threaded)
        wall = time.perf_counter() - t0
        if report.frames_written / wall > best:
            best, busy = report.frames_written / wall, (cpu_seconds() - cpu0) / wall
    assert report is not None
    return best, {**report.to_dict(), "cpu_cores_busy": busy}


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _random_gpen(path: Path, size: int) -> Path:
    """Random weights; up to 256 px the light GPEN-256 layout (cm 1, narrow 0.5), from 512 up the official one."""
    import torch

    from gpen_video.models.gpen import FullGenerator

    torch.manual_seed(0)
    cm, narrow = (1, 0.5) if size <= 256 else (2, 1.0)
    torch.save(FullGenerator(size, 512, 8, channel_multiplier=cm, narrow=narrow).state_dict(), path)
    return path


def _threads_vs_sequential(
    title: str, clip: Path, out: Path, config: Config, args: argparse.Namespace, figures: dict[str, float]
) -> None:
    sequential, seq = (0.0, None) if args.no_sequential else best_fps(clip, out, config, False, args.repeat)
    with GpuSampler() as gpu:
        threaded, report = best_fps(clip, out, config, True, args.repeat)
    restore = report["restore"]
    forward = restore.get("forward_batch", "not reported")  # the code before the restorer contract has none
    print(f"\n{title}: {restore['restorer']}, batch {restore['batch_size']} (network ran {forward}), "
          f"{report['faces']['faces_restored']} faces, device path {restore['device_path']}")  # fmt: skip
    section = title.split(".")[0]
    figures[f"{section}. threaded frames/s"] = threaded
    figures[f"{section}. threaded CPU ms/frame"] = 1000 * report["cpu_cores_busy"] / threaded
    if seq is not None:
        figures[f"{section}. sequential frames/s"] = sequential
        figures[f"{section}. sequential CPU ms/frame"] = 1000 * seq["cpu_cores_busy"] / sequential
    wall = report["frames_written"] / threaded
    if seq is not None:
        alone = {k: v for k, v in seq["stage_seconds"].items() if k != "verify"}
        slowest = max(alone, key=alone.get)
        busy = seq["cpu_cores_busy"]
        print(f"   stages one after another       {sequential:7.2f} frames/s   ({busy:.2f} cores busy)")
        print(f"   stage threads                  {threaded:7.2f} frames/s   ratio {threaded / sequential:5.2f}"
              f"  (goal >= 1.3), {report['cpu_cores_busy']:.2f} of {os.cpu_count()} cores busy")  # fmt: skip
        print("   stage times alone: " + ", ".join(f"{k} {v:.2f}s" for k, v in sorted(alone.items())))
        print(f"   threaded wall {wall:.2f}s = {wall / sum(alone.values()):.2f}× the sum of the stages alone, "
              f"{wall / alone[slowest]:.2f}× the slowest alone ({slowest})")  # fmt: skip
    else:
        print(f"   stage threads                  {threaded:7.2f} frames/s, {report['cpu_cores_busy']:.2f} cores busy")
    print(f"   {report['faces_per_second']:.2f} faces/s, bounded by {report['bounding_stage']}; busy seconds: "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(report["stage_seconds"].items())))  # fmt: skip
    # issue 23's GPU goal: the network bounds the run and every host stage waits at least 30 % of the time
    idle = {k: max(0.0, 1.0 - v / wall) for k, v in report["stage_seconds"].items() if k not in ("restore", "verify")}
    print("   host stages idle: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(idle.items()))
          + f"; decoded on {report.get('decoder', 'cpu')}, detector on "
          f"{report['faces'].get('detector_device', 'cpu')}")  # fmt: skip
    if args.device.startswith("cuda") or gpu.samples:
        print(f"   {gpu.describe()}")
    append_row(args, {"host_idle_share": idle, "decoder": report.get("decoder", "cpu"),
                      "detector_device": report["faces"].get("detector_device", "cpu"), "section": section,
                      "title": title, "frames": report["frames_written"], "fps": threaded,
                      "sequential_fps": sequential if seq is not None else None,
                      "faces_per_s": report["faces_per_second"], "bounding_stage": report["bounding_stage"],
                      "bounding_ms_per_frame": report.get("bounding_ms_per_frame"),
                      "stage_busy_seconds": report["stage_seconds"], "cpu_cores_busy": report["cpu_cores_busy"],
                      "restorer": restore["restorer"], "batch_size": restore["batch_size"],
                      "forward_batch": forward, "device_path": restore["device_path"], **gpu.figures()})  # fmt: skip


def append_row(args: argparse.Namespace, row: dict) -> None:
    """One section's figures, appended to ``--jsonl`` as soon as they are measured."""
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(json.dumps({"bench": "pipeline", "size": f"{args.width}x{args.height}", "scene": args.scene,
                                "device": args.device, "precision": args.precision, **row}) + "\n")  # fmt: skip


def main() -> None:
    args = parse_args()
    if args.against:
        higher_is_better = lambda name: " ms/" not in name  # noqa: E731 - frames/s up, CPU ms/frame down
        argv = _without(sys.argv[1:], {"--jsonl"})
        figures = compare(Path(__file__).resolve(), argv, args.against, args.rounds, higher_is_better)
        print_ratios(figures, args.against, "frames/s")
        return
    sections = {int(s) for s in args.sections.split(",")}
    figures: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        base = {"output.overwrite": True, "output.video_codec": "libx264", "output.preset": args.preset,
                "restore.device": args.device, "restore.batch_size": args.batch_size,
                "restore.precision": args.precision}  # fmt: skip
        identity = load_config("default", {**base, "restore.model": "identity"})
        faces = _clip(tmpdir / "faces.mp4", args, faces=True)
        settings = choose_encoding(probe(faces).video, identity.output)
        print(f"{args.width}x{args.height}, {args.frames} frames, scene '{args.scene}', encoder {settings.describe()}")

        if 1 in sections:
            _no_faces(tmpdir, identity, settings, args, figures)
        if 2 in sections:
            _threads_vs_sequential("2. faces, identity restorer", faces, tmpdir / "o.mp4", identity, args, figures)
        model = args.model
        if 3 in sections and model is None and args.gpen_size:
            model = str(_random_gpen(tmpdir / f"gpen-{args.gpen_size}.pth", args.gpen_size))
        if 3 in sections and model:
            gpen = load_config("default", {**base, "restore.model": model})
            _threads_vs_sequential("3. faces, GPEN", faces, tmpdir / "o.mp4", gpen, args, figures)
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures}, indent=1))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--scene", choices=sorted(SCENES), default="six", help="faces per frame: six, or a two-shot")
    parser.add_argument("--sections", default="1,2,3", help="which of the three measurements to run")
    parser.add_argument("--preset", default="medium", help="x264 preset for every run (same encoder everywhere)")
    parser.add_argument("--gpen-size", type=int, default=128, help="random GPEN for section 3 (0: skip)")
    parser.add_argument("--model", help="a real model instead (e.g. gpen-bfr-2048 with --device cuda)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-sequential", action="store_true", help="sections 2 and 3: skip the one-thread baseline")
    parser.add_argument("--against", help="also run an older version (commit or folder) and print new/old ratios")
    parser.add_argument("--rounds", type=int, default=2, help="with --against: alternating runs of each version")
    parser.add_argument("--json", help="write the figures (frames/s) here")
    parser.add_argument("--jsonl", help="append each section's figures here as soon as they are measured")
    parser.add_argument("--clip-preset", help="x264 preset of the synthetic input clip (default: x264's own)")
    return parser.parse_args()


def _no_faces(
    tmpdir: Path, identity: Config, settings: EncodeSettings, args: argparse.Namespace, figures: dict[str, float]
) -> None:
    """Section 1: the pipeline on a clip with no faces against a bare PyAV loop with the same encoder."""
    plain = _clip(tmpdir / "plain.mp4", args, faces=False)
    repeat = max(2, args.repeat)  # best of two at least: the first run of either pays cold caches
    bare = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = bare_loop(plain, tmpdir / "bare.mp4", settings.codec, settings.pix_fmt, settings.options)
        bare = max(bare, n / (time.perf_counter() - t0))
    piped, piped_report = best_fps(plain, tmpdir / "o.mp4", identity, True, repeat)
    print("\n1. no faces")
    print(f"   bare PyAV decode→encode        {bare:7.2f} frames/s")
    print(f"   pipeline, identity             {piped:7.2f} frames/s   ratio {piped / bare:5.2f}  (goal >= 0.8)")
    figures["1. bare PyAV loop frames/s (same code: noise)"] = bare
    figures["1. pipeline, no faces frames/s"] = piped
    figures["1. pipeline, no faces CPU ms/frame"] = 1000 * piped_report["cpu_cores_busy"] / piped
    append_row(args, {"section": "1", "title": "1. no faces", "fps": piped, "bare_pyav_fps": bare})


if __name__ == "__main__":
    main()
