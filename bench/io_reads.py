"""Archive-scale I/O: how much of the input each command reads, against main at bc608b2, in the same run.

    python bench/io_reads.py [--baseline /tmp/probe-base ...] [--size 960x540] [--mov-frames 3200]
                             [--ts-frames 15000] [--ts-segment-seconds S] [--soak-minutes 10] [--soak-fps 10]
                             [--mkv-frames 1200] [--no-soak] [--only mov|mkv|ts|soak] [--per-open]
                             [--commands restore,batch]

Makes, in a temporary folder (deleted afterwards): a rawvideo MOV of a few GB (intra, 24-bit PCM
audio), an FFV1 Matroska master (10-bit 4:2:2, grain-like noise, FLAC) and an H.264 MPEG-TS, all with
the ffmpeg CLI. For each input and each code base (this checkout, and the baseline: ``git worktree add
/tmp/probe-base bc608b2``) it runs, each in a fresh process: ``probe``, a 1-second ``preview`` from the
middle, a whole-file ``restore --model identity`` and a ``batch`` of 10 segments (a tenth of the file
each, or ``--ts-segment-seconds`` on the TS), and prints for each:

- ``input×``: bytes read from the input through ``av.open`` (a counting file object), / its size;
- ``seg×``: bytes read from the files the command itself wrote in the job folder (batch segments) through
  ``av.open``, / the input's size; ``back×``: the same of its output (the temporary file it verifies), and
  ``other×``: the rest of ``rchar`` (segments' side files, manifests, the output's folder), each / the input's size;
- ``rchar×`` / ``read_bytes×``: the process's own ``/proc/self/io`` around the command, / the input's
  size (rchar is everything the process read: the sum of the four before; read_bytes is what came from
  the disk: the input's pages are dropped from the cache before each command);
- ``out×``: the output's size / the input's: the goal for a batch is ``rchar×`` <= 1 + ``out×`` + the overlap;
- the wall time;
- with ``--per-open``, under each row: the input's bytes read by each ``av.open`` of it, by the function that
  opened it (repeated opens summed, their count in brackets), as a multiple of its size.

Goals (issue 13): probe <= 1 % on MOV/MP4/AVI/MKV, preview <= 5 %, restore and batch <= 1.1×.

The TS is 10 minutes by default (60-second segments, as a reel is cut). Under each batch row, the overlap floor:
the warm-up and look-ahead frames each seam reads twice, which no way of reading removes. On a short file with
short segments the floor alone passes 1.1× (``--ts-frames 1500``: 1 minute in 6-second segments, 1.156×), and a
1-second preview with its GOP before it is already some 4 % of a minute.

The soak restores a >= 10-minute 360p clip with faces (insightface's t1.jpg) with ``identity`` and
prints the RSS at 10 %, 50 % and 100 % of it; the goal is no growth past warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


# -- the child: one command, counted ------------------------------------------------------------
def _proc_io() -> dict[str, int]:
    values = {}
    with open("/proc/self/io") as handle:
        for line in handle:
            key, value = line.split(":")
            values[key.strip()] = int(value)
    return values


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(input_path: str, args: list[str], soak: bool) -> None:
    """Run ``gpen-video ARGS`` in this process; print one JSON line with what it read."""
    import av

    import gpen_video.cli as cli
    import gpen_video.jobs.batch_cli  # imported before counting: module files are not the input
    import gpen_video.preview
    import gpen_video.run

    sys.path.insert(0, str(ROOT / "tests"))  # the tests' counting file object: one definition of "bytes read"
    from read_counting import CountingFile

    reads: list[tuple[int, int]] = []
    opens: list[tuple[str, list[tuple[int, int]]]] = []  # per av.open of the input: who opened it, what it read
    others: dict[str, list[tuple[int, int]]] = {}  # every other file av.open read (segments, the output), by path
    real_open = av.open
    target = os.path.realpath(input_path)

    def counting_open(file, mode="r", **kwargs):  # type: ignore[no-untyped-def]
        if mode == "r" and isinstance(file, (str, Path)) and os.path.realpath(file) == target:
            opens.append((_opener(), []))
            return real_open(CountingFile(Path(file), opens[-1][1]), mode, **kwargs)
        if mode == "r" and isinstance(file, (str, Path)) and os.path.isfile(file):
            return real_open(CountingFile(Path(file), others.setdefault(os.path.realpath(file), [])), mode, **kwargs)
        return real_open(file, mode, **kwargs)

    av.open = counting_open
    rss: dict[str, float] = {}
    if soak:
        from gpen_video.config import load_config
        from gpen_video.io.probe import probe

        info = probe(input_path)
        total = info.video.frame_count
        marks = {max(int(total * f), 1): f"{int(f * 100)}%" for f in (0.1, 0.5, 1.0)}

        def progress(done: int) -> None:
            if done in marks:
                rss[marks[done]] = round(_rss_mb(), 1)

        config = load_config(None, {"restore.model": "identity", "output.overwrite": True})
        before, t0 = _proc_io(), time.perf_counter()
        report = gpen_video.run.run_restore(
            gpen_video.run.RestoreJob(Path(input_path), Path(args[0]), config, progress=progress, info=info)
        )
        rss.setdefault("100%", round(_rss_mb(), 1))
        rss["frames"] = report.frames_written
        rss["faces"] = report.faces.faces_restored if report.faces else 0
        code = 0
    else:
        before, t0 = _proc_io(), time.perf_counter()
        code = cli.main(args)
    wall = time.perf_counter() - t0
    after = _proc_io()
    reads += [r for _, log in opens for r in log]
    per_open = [[who, sum(n for _, n in log)] for who, log in opens]
    written = _by_kind(others)
    print(json.dumps({"code": code, "input": sum(n for _, n in reads), "rchar": after["rchar"] - before["rchar"],
                      "read_bytes": after["read_bytes"] - before["read_bytes"], "wall": wall, "rss": rss,
                      "opens": per_open, **written}))  # fmt: skip


def _by_kind(reads: dict[str, list[tuple[int, int]]]) -> dict[str, int]:
    """Bytes read from the command's segments and from its output (``_kind``)."""
    return {kind: sum(n for path, log in reads.items() if _kind(path) == kind for _, n in log)
            for kind in ("segments", "output")}  # fmt: skip


def _kind(path: str) -> str:
    """What a file the command read (other than its input) is: one of its batch segments, or its output."""
    return "segments" if ".gpen-video-job" in Path(path).parts else "output"


def _opener() -> str:
    """The project's function that opened the input (the innermost gpen_video frame above the open helpers)."""
    import traceback

    frames = [f for f in traceback.extract_stack() if "gpen_video" in f.filename and f.name not in _OPEN_HELPERS]
    return f"{Path(frames[-1].filename).stem}.{frames[-1].name}" if frames else "?"


_OPEN_HELPERS = ("open_input", "open_probed", "open_file")


# -- the driver ---------------------------------------------------------------------------------
def ffmpeg(*args: str | Path) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *map(str, args)], check=True)


def drop_cache(path: Path) -> None:
    """Drop the file's clean pages, so read_bytes shows what a cold read costs."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def output_bytes(command: list[str]) -> int:
    """The size of what ``command`` wrote after ``-o`` (a file, or a folder's media files, the job folder aside)."""
    target = Path(command[command.index("-o") + 1])
    if target.is_file():
        return target.stat().st_size
    if not target.is_dir():
        return 0
    files = [p for p in target.rglob("*") if p.is_file() and ".gpen-video-job" not in p.parts]
    return sum(p.stat().st_size for p in files)


def run_child(code_root: Path, input_path: Path, args: list[str], soak: bool = False) -> dict:
    drop_cache(input_path)
    env = dict(os.environ, PYTHONPATH=str(code_root))
    command = [sys.executable, str(HERE), "--child", str(input_path), *(["--soak"] if soak else []), "--", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1], "process_wall": time.perf_counter() - t0}
    result = json.loads(lines[-1])
    result["written"] = output_bytes(args) if "-o" in args else 0
    if result["code"] != 0:
        result["error"] = f"exit status {result['code']}: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    return result


def commands(src: Path, work: Path, duration: float, extra: list[str], segment: float | None) -> dict[str, list[str]]:
    segment_seconds = duration / 10 if segment is None else segment
    return {
        "probe": ["probe", str(src), "--json"],
        "preview 1 s": ["preview", str(src), "--start", f"{duration / 2:.3f}", "--duration", "1", "--compare",
                        "none", "-o", str(work / "pv"), "--model", "identity", "-q", "--overwrite", *extra],
        "restore": ["restore", str(src), "-o", str(work / f"restored{src.suffix}"), "--model", "identity", "-q",
                    "--overwrite", *extra],
        f"batch {round(duration / segment_seconds)} seg": ["batch", str(src), "-o", str(work / "batch"), "--model",
                         "identity", "-q", "--segment-seconds", f"{segment_seconds:.3f}", *extra],
    }  # fmt: skip


def per_open_line(opens: list[list], size: int) -> str:
    """``who ×share`` for each opener (repeated opens summed, their count in brackets), in first-open order."""
    totals: dict[str, list[float]] = {}
    for who, n in opens:
        totals.setdefault(who, [0, 0])
        totals[who][0] += n / size
        totals[who][1] += 1
    return ", ".join(f"{who}{f'[{int(c)}]' if c > 1 else ''} {share:.4f}" for who, (share, c) in totals.items())


def overlap_floor(frames: int, rate: int, command: list[str]) -> str:
    """What a batch must read at least: every frame once, and at each seam between segments the warm-up and the
    look-ahead again (``PlanSettings.for_faces``, as the batch runner plans): the floor under its input×."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from gpen_video.config import load_config
    from gpen_video.jobs.planner import PlanSettings

    seconds = float(command[command.index("--segment-seconds") + 1])
    plan = PlanSettings.for_faces(load_config(None).faces, seconds)
    seams = max(round(frames / (seconds * rate)) - 1, 0)
    overlap = plan.warmup_frames + plan.lookahead_frames
    return (f"overlap floor: {1 + seams * overlap / frames:.3f}× (warm-up {plan.warmup_frames} + look-ahead "
            f"{plan.lookahead_frames} frames read again at each of {seams} seams, over {frames} frames)")  # fmt: skip


def clean(work: Path) -> None:
    for path in work.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def main() -> None:
    args, rest = parse_args()
    if args.child:
        child(args.child, rest[1:] if rest[:1] == ["--"] else rest, args.soak)
        return
    roots = code_roots(args.baseline or [Path("/tmp/probe-base")])
    tmp = Path(tempfile.mkdtemp(prefix="io-reads-", dir=args.workdir))
    try:
        rate = 25
        for src, extra in make_inputs(tmp, args, rate).items():
            report_input(src, extra, args, roots, tmp / "work", rate)
            src.unlink()
        if not args.no_soak:
            soak(tmp, args.soak_minutes, args.soak_fps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--soak", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", type=Path, action="append",
                        help="a checkout of bc608b2 (default /tmp/probe-base); repeat to compare several")  # fmt: skip
    parser.add_argument("--size", default="960x540")
    parser.add_argument("--mov-frames", type=int, default=3200)
    parser.add_argument("--mkv-frames", type=int, default=1200, help="the FFV1 Matroska master (grain-like noise)")
    parser.add_argument("--ts-frames", type=int, default=15000, help="10 minutes; 1500 shows a short file's floor")
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument("--soak-fps", type=int, default=10)
    parser.add_argument("--ts-segment-seconds", type=float, help="the TS batch's segments (default: a tenth of it, "
                        "60 s on the default 10 minutes)")  # fmt: skip
    parser.add_argument("--no-soak", action="store_true")
    parser.add_argument("--per-open", action="store_true", help="under each row, the bytes each av.open of it read")
    parser.add_argument("--only", choices=["mov", "mkv", "ts", "soak"], help="one input only, or the soak only")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--commands", help="only these, comma-separated: probe,preview,restore,batch")
    return parser.parse_known_args()


def code_roots(baselines: list[Path]) -> dict[str, Path]:
    """This checkout and each baseline checkout that exists, by label."""
    roots = {"this": ROOT}
    for baseline in baselines:
        if (baseline / "gpen_video").is_dir():
            roots[baseline.name[-7:]] = baseline.resolve()  # labelled by the folder's last 7 characters
        else:
            print(f"(no baseline at {baseline}: git worktree add {baseline} bc608b2)")
    return roots


def make_inputs(tmp: Path, args: argparse.Namespace, rate: int) -> dict[Path, list[str]]:
    """The MOV, the MKV and the TS (or the one ``--only`` names), made with the ffmpeg CLI: each with its extra
    arguments."""
    inputs = {}
    if args.only in (None, "mov"):
        mov = tmp / "reel.mov"
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={args.size}:rate={rate}", "-f", "lavfi", "-i",
               "sine=frequency=440:sample_rate=48000", "-frames:v", str(args.mov_frames),
               "-t", f"{args.mov_frames / rate}", "-c:v", "rawvideo", "-pix_fmt", "uyvy422",
               "-c:a", "pcm_s24le", mov)  # fmt: skip
        inputs[mov] = []
    if args.only in (None, "mkv"):
        mkv = tmp / "reel.mkv"
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={args.size}:rate={rate}", "-f", "lavfi", "-i",
               "sine=frequency=440:sample_rate=48000", "-frames:v", str(args.mkv_frames),
               "-t", f"{args.mkv_frames / rate}", "-vf", "noise=alls=12:allf=t", "-c:v", "ffv1", "-g", "1",
               "-pix_fmt", "yuv422p10le", "-c:a", "flac", mkv)  # fmt: skip
        inputs[mkv] = []
    if args.only in (None, "ts"):
        ts = tmp / "reel.ts"
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={args.size}:rate={rate}", "-f", "lavfi", "-i",
               "sine=frequency=440", "-frames:v", str(args.ts_frames), "-t", f"{args.ts_frames / rate}",
               "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-bf", "2", "-c:a", "aac", ts)  # fmt: skip
        inputs[ts] = ["--preset", "ultrafast"]
    return inputs


def report_input(
    src: Path, extra: list[str], args: argparse.Namespace, roots: dict[str, Path], work: Path, rate: int
) -> None:
    """One input's table: each command under each code base, in a fresh process."""
    size = src.stat().st_size
    frames = {".mov": args.mov_frames, ".mkv": args.mkv_frames}.get(src.suffix, args.ts_frames)
    print(f"\n{src.name}: {size / 1e9:.2f} GB, {frames} frames {args.size}")
    print(f"  {'command':<13} {'code':<8} {'input×':>8} {'seg×':>7} {'back×':>7} {'other×':>7} {'rchar×':>8} "
          f"{'read_bytes×':>12} {'out×':>7} {'wall s':>8}")  # fmt: skip
    work.mkdir(exist_ok=True)
    segment = args.ts_segment_seconds if src.suffix == ".ts" else None
    for name, command in commands(src, work, frames / rate, extra, segment).items():
        if args.commands and name.split()[0] not in args.commands.split(","):
            continue
        for label, root in roots.items():
            result = run_child(root, src, command)
            clean(work)
            print_row(name, label, result, size, args.per_open)
        if name.startswith("batch"):
            print("      " + overlap_floor(frames, rate, command))


def print_row(name: str, label: str, result: dict, size: int, per_open: bool) -> None:
    if "error" in result:
        print(f"  {name:<13} {label:<8} failed: {result['error']}")
        return
    counted = result["input"] + result.get("segments", 0) + result.get("output", 0)
    print(f"  {name:<13} {label:<8} {result['input'] / size:>8.4f} {result.get('segments', 0) / size:>7.3f} "
          f"{result.get('output', 0) / size:>7.3f} {(result['rchar'] - counted) / size:>7.3f} "
          f"{result['rchar'] / size:>8.3f} {result['read_bytes'] / size:>12.4f} {result['written'] / size:>7.3f} "
          f"{result['wall']:>8.1f}")  # fmt: skip
    if per_open:
        print("      " + per_open_line(result["opens"], size))


def soak(tmp: Path, minutes: float, fps: int) -> None:
    import insightface

    face = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    src = tmp / "soak.mp4"
    seconds = minutes * 60
    # the group photo, scaled to 360p, panning slowly so the faces move; fast x264
    ffmpeg("-loop", "1", "-framerate", str(fps), "-i", face, "-t", f"{seconds}",
           "-vf", "scale=720:-2,crop=640:360:(iw-640)/2+20*sin(t/3):(ih-360)/2+10*cos(t/5)",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", src)  # fmt: skip
    out = tmp / "soak.restored.mp4"
    result = run_child(ROOT, src, [str(out)], soak=True)
    if "error" in result:
        print(f"\nsoak failed: {result['error']}")
        return
    rss = result["rss"]
    print(
        f"\nsoak: {minutes:g} min of 360p at {fps} fps, {rss.get('frames')} frames, {rss.get('faces')} faces restored, "
        f"{result['wall']:.0f} s; RSS MB at 10 % {rss.get('10%')}, 50 % {rss.get('50%')}, 100 % {rss.get('100%')}"
    )


if __name__ == "__main__":
    main()
