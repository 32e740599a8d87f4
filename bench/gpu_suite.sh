#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one command: the GPU tests, GPEN-2048 timings and the 4K pipeline.
#
#   PYTHON=.venv/bin/python OUT=bench-out [AGAINST=bc608b2|DIR] bash bench/gpu_suite.sh [FRAMES]
#
# AGAINST (a commit, or a folder with an older checkout where there is no .git) adds new/old runs of the
# model and pipeline benches (bench/baseline.py), so a change's speed is judged on the GPU it runs on.
#
# PYTHON must have gpen-video installed with a CUDA PyTorch (scripts/setup.sh --test on a GPU machine keeps
# pip's default CUDA build). Each step's output goes to $OUT/*.txt as well as the terminal; a failing step
# is reported and the next one still runs, and the exit status says whether any failed.
set -uo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-bench-out}
FRAMES=${1:-96}
mkdir -p "$OUT"
failed=0
step() {  # step NAME COMMAND...: run, tee to $OUT/NAME.txt, remember a failure
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$OUT/$name.txt"
    local status=${PIPESTATUS[0]}
    [ "$status" -eq 0 ] || { echo "== $name failed ($status)"; failed=1; }
}
step gpu-info nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step cuda-check "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'this PyTorch sees no GPU'; print(torch.__version__)"
step gpu-tests "$PYTHON" -m pytest -q -m gpu -rs tests
step model-2048 "$PYTHON" bench/model_bench.py --device cuda --sizes 2048 --batches 1 2 4 8 \
    --precisions fp32 bf16 fp16 --json "$OUT/model-2048.json"
step pipeline-4k "$PYTHON" bench/pipeline_bench.py --sections 3 --scene two --width 3840 --height 2160 \
    --gpen-size 2048 --device cuda --frames "$FRAMES" --preset veryfast --no-sequential
step pipeline-1080p "$PYTHON" bench/pipeline_bench.py --sections 1,2,3 --gpen-size 512 --device cuda --frames "$FRAMES"
if [ -n "${AGAINST:-}" ]; then
    step model-2048-vs-base "$PYTHON" bench/model_bench.py --device cuda --sizes 2048 --batches 1 4 \
        --precisions bf16 --against "$AGAINST" --rounds 2
    step pipeline-4k-vs-base "$PYTHON" bench/pipeline_bench.py --sections 3 --scene two --width 3840 --height 2160 \
        --gpen-size 2048 --device cuda --frames "$FRAMES" --preset veryfast --no-sequential --against "$AGAINST" --rounds 2
fi
exit $failed
