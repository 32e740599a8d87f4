"""Does the host keep a GPU fed? The identity pipeline on clips with a known count and size of faces, against a
bare PyAV decode→encode loop of the same clip with the same encoder, in the same run.

    python bench/host_bench.py [--frames 24] [--cases six-1080p,two-4k] [--preset veryfast]
    python bench/host_bench.py --against 98dbf1a [--rounds 2]     # this code and that, alternating: new/old
    python bench/host_bench.py --crop 2048 --cases six-1080p      # compose with crops of GPEN-2048's size
    python bench/host_bench.py --set faces.min_face=36 --cases faceless-1080p   # a setting's cost, config names
    python bench/host_bench.py --device cuda --cases two-4k       # a GPU run: NVDEC, the detector's networks,
                                                                  # the crops and the paste-back on the GPU

Cases (``--cases``, comma-separated; default all): the six faces of t1.jpg at 720p, 1080p and 4K
(``six-720p``, ``six-1080p``, ``six-4k``), a two-shot at 4K (``two-4k``), a 30-face crowd at 1080p
(``crowd-1080p``), a 10-second 1080p clip with no face (``faceless-1080p``, ``--faceless-seconds``: every colour
moves its own way, so every key frame is a sweep), and the same length of a camera panning over a still faceless
scene (``pan-faceless-1080p``: only the camera moves, so between sweeps the change map finds nothing to search).

For each case it prints:

- the bare loop's and the pipeline's frames/s (stage threads, the way ``restore`` runs) and their ratio;
- per stage, its busy ms per frame in that threaded run (wall time at work, not waiting), and the bounding stage;
- per stage, its process CPU ms per frame and per face-frame, from a second run with the stages one after
  another (``run(threaded=False)``: each stage's CPU time is then its own, native and worker threads included);
- the tracks found against the faces the clip holds.

For the faceless case also the start-up: ``gpen-video restore`` in a fresh process, from its start to the
first decoded frame (the report's ``first_decoded_at``).

The issue-23 goals are printed beside the figures (1080p six faces >= 0.4x the bare loop, 4K two faces >= 0.6x,
faceless >= 0.9x with start-up <= 1 s; faces <= 6 ms and compose <= 3 ms of CPU per face-frame at 1080p).
Wall-clock ratios need a quiet machine; CPU per face-frame does not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, os.environ.get("GPEN_VIDEO_CODE", str(Path(__file__).resolve().parent.parent)))  # or --against's

from gpen_video.config import Config, load_config
from gpen_video.io.encoding import choose_encoding
from gpen_video.io.probe import probe
from gpen_video.synthetic import TWO_FACES, CrowdScene, FaceScene, crowd_frames, frames

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import compare, print_ratios
from io_bench import bare_loop
from pipeline_bench import best_fps, cpu_seconds

STAGES = ("decode", "faces", "restore", "compose", "encode")


@dataclass(frozen=True)
class Case:
    name: str
    width: int
    height: int
    faces: int  # faces the clip holds (every frame)
    kind: str  # six | two | crowd | none


CASES = (
    Case("six-720p", 1280, 720, 6, "six"),
    Case("six-1080p", 1920, 1080, 6, "six"),
    Case("six-4k", 3840, 2160, 6, "six"),
    Case("two-4k", 3840, 2160, 2, "two"),
    Case("crowd-1080p", 1920, 1080, 30, "crowd"),
    Case("faceless-1080p", 1920, 1080, 0, "none"),
    Case("pan-faceless-1080p", 1920, 1080, 0, "pan"),
)
PAN_PX = 6  # the camera-only faceless case's pan, px a frame
# ratio to the bare loop (issue 23)
GOALS = {"six-1080p": 0.4, "two-4k": 0.6, "faceless-1080p": 0.9, "pan-faceless-1080p": 0.9}


def case_frames(case: Case, count: int) -> Iterator[np.ndarray]:
    """The case's pictures (BGR uint8): the photo under a slow pan and zoom, a crowd, or a faceless texture."""
    if case.kind == "crowd":
        yield from crowd_frames(CrowdScene(width=case.width, height=case.height, frames=count, columns=6, rows=5))
        return
    if case.kind == "pan":
        yield from pan_frames(case, count)
        return
    region = TWO_FACES if case.kind == "two" else None
    scene = FaceScene(width=case.width, height=case.height, frames=count, zoom=(1.0, 1.1), faces=case.kind != "none",
                      photo_region=region)  # fmt: skip
    for frame in frames(scene):
        yield frame.image


def pan_frames(case: Case, count: int) -> Iterator[np.ndarray]:
    """A camera panning over a still faceless scene (``PAN_PX`` a frame): only the camera moves, so a key frame
    between sweeps finds nothing changed once the pan is taken out (where the ``none`` case's every cell moves)."""
    rng = np.random.default_rng(7)
    width = case.width + PAN_PX * count
    coarse = rng.uniform(0, 255, (case.height // 24 + 1, width // 24 + 1, 3)).astype(np.float32)
    scene = cv2.resize(coarse, (width, case.height), interpolation=cv2.INTER_CUBIC)
    scene += rng.normal(0, 6, scene.shape).astype(np.float32)  # fine detail for the corners and the codec
    scene = np.clip(scene, 0, 255).astype(np.uint8)
    for index in range(count):
        yield np.ascontiguousarray(scene[:, PAN_PX * index : PAN_PX * index + case.width])


def write_case(path: Path, case: Case, count: int) -> Path:
    """The case as an H.264 MP4 written by PyAV (crf 16, 24 fps): the input both runs decode."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24, options={"crf": "16", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = case.width, case.height, "yuv420p"
        for index, image in enumerate(case_frames(case, count)):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, 24)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def measure_bare(clip: Path, out: Path, config: Config, repeat: int) -> tuple[float, float]:
    """The bare loop's best frames/s of ``repeat`` runs, and its CPU ms per frame."""
    settings = choose_encoding(probe(clip).video, config.output)
    best, cpu_ms = 0.0, 0.0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), cpu_seconds()
        n = bare_loop(clip, out, settings.codec, settings.pix_fmt, settings.options)
        fps = n / (time.perf_counter() - t0)
        if fps > best:
            best, cpu_ms = fps, 1000 * (cpu_seconds() - c0) / n
    return best, cpu_ms


def startup_seconds(clip: Path, out: Path, preset: str) -> float | None:
    """``gpen-video restore`` in a fresh process: seconds from its start to its first decoded frame."""
    report = out.with_suffix(".json")
    command = [sys.executable, "-m", "gpen_video", "restore", str(clip), "-o", str(out), "--model", "identity",
               "--overwrite", "-q", "--preset", preset, "--report", str(report)]  # fmt: skip
    code = os.environ.get("GPEN_VIDEO_CODE", str(Path(__file__).resolve().parent.parent))
    t0 = time.time()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": code})
    first = json.loads(report.read_text()).get("first_decoded_at")
    return None if first is None else first - t0


def run_case(case: Case, tmpdir: Path, args: argparse.Namespace, figures: dict[str, float]) -> None:
    count = args.faceless_seconds * 24 if case.kind in ("none", "pan") else args.frames
    clip = write_case(tmpdir / f"{case.name}.mp4", case, count)
    config = load_config("default", {"output.overwrite": True, "output.video_codec": "libx264",
                                     "output.preset": args.preset, "restore.model": "identity",
                                     "restore.identity_size": args.crop,
                                     "restore.device": args.device, **dict(args.set)})  # fmt: skip
    bare, bare_cpu = measure_bare(clip, tmpdir / "bare.mp4", config, args.repeat)
    threaded, report = best_fps(clip, tmpdir / "out.mp4", config, True, args.repeat)
    _, sequential = best_fps(clip, tmpdir / "out.mp4", config, False, 1)
    frames_out = report["frames_written"]
    face_frames = report["faces"]["faces_restored"]
    tracks = len(report["faces"]["tracks"])
    ratio = threaded / bare
    goal = f"  (goal >= {GOALS[case.name]})" if case.name in GOALS else ""
    print(f"\n{case.name}: {case.width}x{case.height}, {frames_out} frames, {case.faces} faces in the clip, "
          f"{tracks} tracks, {face_frames} face-frames restored")  # fmt: skip
    print(f"   bare PyAV decode→encode  {bare:7.2f} frames/s   {bare_cpu:6.1f} CPU ms/frame")
    print(f"   pipeline, stage threads  {threaded:7.2f} frames/s   ratio to bare {ratio:5.2f}{goal}")
    print(
        f"   decoded on {report.get('decoder', 'cpu')}, detector on {report['faces'].get('detector_device', 'cpu')}, "
        f"frame path {'on the device' if report['restore'].get('device_path') else 'on the host'}"
    )
    busy = report["stage_seconds"]
    cpu = sequential.get("stage_cpu_seconds", {})
    bound = report["bounding_stage"]
    print(f"   bounded by {bound}: {1000 * busy.get(bound, 0) / frames_out:.1f} ms/frame busy")
    print("   stage       busy ms/frame   CPU ms/frame   CPU ms/face-frame   (CPU: stages one after another)")
    for stage in STAGES:
        per_frame = 1000 * busy.get(stage, 0.0) / frames_out
        cpu_frame = 1000 * cpu[stage] / frames_out if stage in cpu else float("nan")
        cpu_face = 1000 * cpu[stage] / face_frames if stage in cpu and face_frames else float("nan")
        print(f"   {stage:10} {per_frame:14.1f} {cpu_frame:14.1f} {cpu_face:19.2f}")
        if stage in ("faces", "compose") and face_frames and stage in cpu:
            figures[f"{case.name} {stage} CPU ms/face-frame"] = cpu_face
    figures[f"{case.name} frames/s"] = threaded
    figures[f"{case.name} ratio to bare"] = ratio
    if case.kind == "none":
        start = startup_seconds(clip, tmpdir / "cli.mp4", args.preset)
        if start is not None:
            print(f"   start-up to the first decoded frame {start:.2f} s (goal <= 1 s)")
            figures[f"{case.name} start-up s"] = start


def main() -> None:
    args = parse_args()
    if args.against:
        higher_is_better = lambda name: " ms/" not in name and not name.endswith(" s")  # noqa: E731
        figures = compare(Path(__file__).resolve(), sys.argv[1:], args.against, args.rounds, higher_is_better)
        print_ratios(figures, args.against, "frames/s and ratios to bare")
        return
    names = args.cases.split(",") if args.cases else [c.name for c in CASES]
    unknown = set(names) - {c.name for c in CASES}
    if unknown:
        raise SystemExit(
            f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(c.name for c in CASES)}"
        )
    figures: dict[str, float] = {}
    print(f"{os.cpu_count()} cores; identity restorer ({args.crop}-px crops) on {args.device}; libx264 {args.preset} "
          f"out; best of {args.repeat} threaded runs"
          + "".join(f"; {name}={value}" for name, value in args.set))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            if case.name in names:
                run_case(case, Path(tmp), args, figures)
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures}, indent=1))


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE")
    return name.strip(), value.strip()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames of each face clip")
    parser.add_argument("--faceless-seconds", type=int, default=10, help="length of the faceless clip (24 fps)")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--preset", default="veryfast", help="x264 preset of both the bare loop and the pipeline")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (bare loop and threaded pipeline)")
    parser.add_argument("--against", help="also run an older version (commit or folder) and print new/old ratios")
    parser.add_argument("--rounds", type=int, default=2, help="with --against: alternating runs of each version")
    parser.add_argument(
        "--crop", type=int, default=512, help="the identity restorer's crop side (2048: compose's load under GPEN-2048)"
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="the identity restorer's device: cpu, or cuda (a GPU run: "
        "NVDEC decode, the detector and the paste-back on the GPU, with the host's work left)",
    )
    parser.add_argument("--set", action="append", default=[], type=_setting, metavar="NAME=VALUE",
                        help="a config setting for the pipeline (repeatable): faces.min_face=36")  # fmt: skip
    parser.add_argument("--json", help="write the figures here")
    return parser.parse_args()


if __name__ == "__main__":
    main()
