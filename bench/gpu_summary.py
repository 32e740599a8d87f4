"""The GPU suite's last lines: a short table of what figures.jsonl and steps.tsv hold (bench/gpu_suite.sh).

Printed last because the device tool returns the end of the output:

    python3 bench/gpu_summary.py OUT/figures.jsonl OUT/steps.tsv
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a killed step
            continue
    return rows


def model_lines(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        if r.get("bench") != "model":
            continue
        peak = f"{r['peak_mem_mib'] / 1024:6.1f} GiB" if r.get("peak_mem_mib") is not None else "     - GiB"
        psnr = f"PSNR {r['face_psnr_db']:5.1f} dB" if r.get("face_psnr_db") not in (None, float("inf")) else ""
        tf32 = {True: " TF32 on", False: " TF32 off"}.get(r.get("tf32"), "")
        lines.append(f"model  {r['size']} {r['impl']:9s} {r['precision']} b={r['batch']:<2d} {r['mode']:8s} "
                     f"{r['ms_per_face']:8.1f} ms/face {r['faces_per_s']:7.2f} faces/s {peak} "
                     f"{'finite' if r.get('finite', True) else 'NOT FINITE'} {psnr}{tf32}")  # fmt: skip
    return lines


def pipeline_lines(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        if r.get("bench") != "pipeline" or "bounding_stage" not in r:
            continue
        busy = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["stage_busy_seconds"].items()))
        gpu = (f", GPU busy {r['gpu_util_steady_pct']:.0f} % steady ({r['gpu_util_mean_pct']:.0f} % whole run)"
               if "gpu_util_steady_pct" in r else "")  # fmt: skip
        idle = ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(r.get("host_idle_share", {}).items()))
        host = f"; host idle: {idle}; decoded on {r.get('decoder', 'cpu')}, detector on " \
               f"{r.get('detector_device', 'cpu')}" if idle else ""  # fmt: skip
        lines.append(f"pipeline {r['size']} {r['precision']} batch {r['batch_size']}: {r['fps']:.2f} fps, "
                     f"{r['faces_per_s']:.1f} faces/s, bounded by {r['bounding_stage']}{gpu}; "
                     f"busy s: {busy}{host}")  # fmt: skip
    return lines


def main(argv: list[str]) -> int:
    rows = read_rows(Path(argv[0]))
    for line in model_lines(rows) + pipeline_lines(rows):
        print(line)
    for r in rows:
        if r.get("bench") == "env":
            gpu, problems = r.get("gpu", "no GPU"), len(r.get("problems", []))
            print(f"env    {gpu}, torch {r.get('torch')}, CUDA {r.get('cuda')}, {problems} problem(s)")
    steps = Path(argv[1]) if len(argv) > 1 else None
    if steps and steps.is_file():
        lines = steps.read_text().splitlines()[1:]
        print("steps: " + "; ".join(" ".join(line.split("\t")[:3]) + " s" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
