"""End-to-end throughput of the restore pipeline, with ratios against baselines measured in the same run.

    python bench/pipeline_bench.py [--frames 24] [--width 1920 --height 1080] [--gpen-size 128]
                                   [--model gpen-bfr-2048 --device cuda]   # on a GPU, with the real model

1. No faces: the pipeline (identity restorer) vs a bare PyAV decode→encode loop, same encoder.
   Goal >= 0.8: what the pipeline adds to pure transcoding (probe, tracking on key frames, checks).
2. Six faces a frame: the threaded pipeline vs the same stages run one after another in one thread.
   Goal >= 1.3: what the stage threads and bounded queues buy.
3. The same with a GPEN network: a small random one on CPU (``--gpen-size``), or ``--model`` on a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from gpen_video.config import Config, load_config
from gpen_video.io.encoding import choose_encoding
from gpen_video.io.probe import probe
from gpen_video.pipeline import RestoreJob, run_restore
from gpen_video.synthetic import AudioTrack, ClipSpec, FaceScene, write_clip

sys.path.insert(0, str(Path(__file__).resolve().parent))
from io_bench import bare_loop


def _clip(path: Path, width: int, height: int, frames: int, faces: bool) -> Path:
    scene = FaceScene(width=width, height=height, frames=frames, faces=faces, zoom=(1.0, 1.1))
    return write_clip(path, ClipSpec(scene=scene, rate=Fraction(24), audio=(AudioTrack(),)))


def _fps(src: Path, out: Path, config: Config, threaded: bool, repeat: int) -> tuple[float, dict]:
    """Best frames/s of ``repeat`` runs; the report gains ``cpu_cores_busy`` (process CPU time / wall)."""
    best, report, busy = 0.0, None, 0.0
    for _ in range(repeat):
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        report = run_restore(RestoreJob(src, out, config), threaded=threaded)
        wall = time.perf_counter() - t0
        if report.frames_written / wall > best:
            best, busy = report.frames_written / wall, (_cpu_seconds() - cpu0) / wall
    assert report is not None
    return best, {**report.to_dict(), "cpu_cores_busy": busy}


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _random_gpen(path: Path, size: int) -> Path:
    import torch

    from gpen_video.models.gpen import FullGenerator

    torch.manual_seed(0)
    model = FullGenerator(size, 512, 8, channel_multiplier=1, narrow=0.5)
    torch.save(model.state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--preset", default="medium", help="x264 preset for every run (same encoder everywhere)")
    parser.add_argument("--gpen-size", type=int, default=128, help="random GPEN for the CPU run (0: skip)")
    parser.add_argument("--model", help="a real model instead (e.g. gpen-bfr-2048 with --device cuda)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        plain = _clip(tmpdir / "plain.mp4", args.width, args.height, args.frames, faces=False)
        faces = _clip(tmpdir / "faces.mp4", args.width, args.height, args.frames, faces=True)
        base = {"output.overwrite": True, "output.video_codec": "libx264", "output.preset": args.preset,
                "restore.device": args.device, "restore.batch_size": args.batch_size}  # fmt: skip
        identity = load_config("default", {**base, "restore.model": "identity"})
        settings = choose_encoding(probe(plain).video, identity.output)
        print(f"{args.width}x{args.height}, {args.frames} frames, encoder {settings.describe()}")

        t0 = time.perf_counter()
        n = bare_loop(plain, tmpdir / "bare.mp4", settings.codec, settings.pix_fmt, settings.options)
        bare = n / (time.perf_counter() - t0)
        piped, _ = _fps(plain, tmpdir / "o.mp4", identity, True, args.repeat)
        print("\n1. no faces")
        print(f"   bare PyAV decode→encode        {bare:7.2f} frames/s")
        print(f"   pipeline, identity             {piped:7.2f} frames/s   ratio {piped / bare:5.2f}  (goal >= 0.8)")

        threaded, report = _fps(faces, tmpdir / "o.mp4", identity, True, args.repeat)
        sequential, seq_report = _fps(faces, tmpdir / "o.mp4", identity, False, args.repeat)
        print(f"\n2. six faces a frame, identity restorer ({report['faces']['faces_restored']} faces)")
        busy_sum = sum(seq_report["stage_seconds"].values())
        print(f"   stages one after another       {sequential:7.2f} frames/s   (sum of stage busy time "
              f"{busy_sum:.1f}s, {seq_report['cpu_cores_busy']:.2f} cores busy)")  # fmt: skip
        print(f"   stage threads                  {threaded:7.2f} frames/s   ratio {threaded / sequential:5.2f}"
              f"  (goal >= 1.3), {report['cpu_cores_busy']:.2f} of {os.cpu_count()} cores busy")  # fmt: skip
        print("   busy seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(report["stage_seconds"].items())))

        model = args.model
        if model is None and args.gpen_size:
            model = str(_random_gpen(tmpdir / f"gpen-{args.gpen_size}.pth", args.gpen_size))
        if model:
            gpen = load_config("default", {**base, "restore.model": model})
            threaded, report = _fps(faces, tmpdir / "o.mp4", gpen, True, args.repeat)
            sequential, seq_report = _fps(faces, tmpdir / "o.mp4", gpen, False, args.repeat)
            restore = report["restore"]
            print(f"\n3. six faces a frame, {restore['restorer']} (batch {restore['batch_size']})")
            print(f"   stages one after another       {sequential:7.2f} frames/s   "
                  f"({seq_report['cpu_cores_busy']:.2f} cores busy)")  # fmt: skip
            print(f"   stage threads                  {threaded:7.2f} frames/s   ratio {threaded / sequential:5.2f}, "
                  f"{report['faces_per_second']:.2f} faces/s, bounded by {report['bounding_stage']}, "
                  f"{report['cpu_cores_busy']:.2f} cores busy")  # fmt: skip


if __name__ == "__main__":
    main()
