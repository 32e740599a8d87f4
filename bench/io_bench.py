"""I/O throughput: the restore pipeline (identity restorer) against a bare PyAV decode→encode loop.

    python bench/io_bench.py [--frames 48] [--width 1920 --height 1080] [--faces] [--codec libx264]

Both runs use the same generated clip and the same encoder settings (the ones `--video-codec auto`
picks), in the same process, so the ratio is independent of the machine. Goal: ratio >= 0.9 on a
clip without faces (the pipeline's own overhead: probe, colour handling, stream copy, verification).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from gpen_video.config import load_config
from gpen_video.io.encoding import choose_encoding
from gpen_video.io.probe import probe
from gpen_video.run import RestoreJob, run_restore
from gpen_video.synthetic import AudioTrack, ClipSpec, FaceScene, write_clip


def bare_loop(src: Path, dst: Path, codec: str, pix_fmt: str, options: dict[str, str]) -> int:
    """The baseline: decode every frame and encode it with the same settings, audio copied."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        vout = out.add_stream(codec, rate=vin.average_rate, options=dict(options))
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, pix_fmt
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        audio = {s.index: out.add_stream_from_template(s) for s in inp.streams.audio}
        frames = 0
        for packet in inp.demux():
            if packet.stream.index in audio:
                if packet.size:
                    packet.stream = audio[packet.stream.index]
                    out.mux(packet)
                continue
            for frame in packet.decode():
                out.mux(vout.encode(frame))
                frames += 1
        out.mux(vout.encode(None))
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--faces", action="store_true", help="a clip with the six faces (default: no faces)")
    parser.add_argument("--codec", default="auto", help="output codec for both runs (auto: what restore picks)")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs each")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        src = tmpdir / "clip.mp4"
        scene = FaceScene(width=args.width, height=args.height, frames=args.frames, faces=args.faces)
        t0 = time.perf_counter()
        write_clip(src, ClipSpec(scene=scene, rate=Fraction(24), audio=(AudioTrack(),)))
        print(f"clip: {args.width}x{args.height}, {args.frames} frames, faces={args.faces} "
              f"(generated in {time.perf_counter() - t0:.1f}s)")  # fmt: skip

        overrides = {"restore.model": "identity", "output.overwrite": True}
        if args.codec != "auto":
            overrides["output.video_codec"] = args.codec
        config = load_config("default", overrides)
        settings = choose_encoding(probe(src).video, config.output)
        print(f"encoder: {settings.describe()}")

        bare, piped = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            n = bare_loop(src, tmpdir / "bare.mp4", settings.codec, settings.pix_fmt, settings.options)
            bare.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            report = run_restore(RestoreJob(src, tmpdir / "restored.mp4", config))
            piped.append(report.frames_written / (time.perf_counter() - t0))
        best_bare, best_pipe = max(bare), max(piped)
        print(f"bare PyAV decode→encode : {best_bare:7.2f} frames/s")
        print(f"gpen-video restore      : {best_pipe:7.2f} frames/s  (identity restorer)")
        print(f"ratio pipeline / bare   : {best_pipe / best_bare:7.3f}   (goal >= 0.9 without faces)")
        print("stage busy seconds (last run): "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(report.stage_seconds.items())))  # fmt: skip


if __name__ == "__main__":
    main()
