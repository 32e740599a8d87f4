#!/usr/bin/env bash
# Every figure that needs a CUDA GPU, in one command on a bare lent GPU machine (an H100 or H200, 16 cores, its
# own python3 3.12 with CUDA torch, no network), in one run of at most 9 minutes.
#
#   here, once (network):   bash bench/gpu_wheels.sh          .whl/: the packages that machine lacks (~37 MiB)
#   here, the proof:        bash bench/gpu_suite.sh --check   the steps below, tiny, on this CPU, with a clean
#                           Python 3.12 venv of that machine's packages (bench/gpu_packages.txt) plus .whl/
#   there (device tool):    command "bash bench/gpu_suite.sh", carry [".whl"]; the files come back from $OUT
#
# The steps, in this order; each appends its figures to $OUT as it measures them:
#   wheels    .whl/*.whl into $GPU_SUITE_SITE (/tmp/site) with pip --no-index --no-deps --target
#   env       bench/gpu_env.py: nvidia-smi, torch/CUDA/cuDNN, free GPU memory, every import the suite makes
#   model     bench/model_bench.py, GPEN-2048 eager, random weights in the official format: fp32 batch 1 (TF32
#             off; the speed and PSNR baseline), bf16 at batch 1 2 4 8 16, fp16 batch 1; ms/face, faces/s, peak
#             memory, finite outputs, PSNR of bf16 and fp16 against fp32 on t1.jpg's largest face aligned at 2048
#   pipeline  bench/pipeline_bench.py: the 4K two-face clip, GPEN-2048 bf16, automatic batch, 240 frames: fps,
#             per-stage busy seconds, the bounding stage, GPU utilisation in the steady state (nvidia-smi)
#   tests     the gpu-marked tests (the files that hold one), each under pytest-timeout's limit
#   compile   only if time is left: torch.compile of bf16 at batch 4, beside eager in the same run
#
# Files in $OUT (default bench/out/gpu-suite): suite.log (everything, as it is printed), figures.jsonl (one JSON
# row per measurement, appended as it is made), steps.tsv (each step: status, seconds, its limit) and
# gpu-tests.xml. Each step runs under its own `timeout` and writes through `tee -a`: a step that fails or runs
# out of time costs none of the figures before it, and the next step still runs. Exit status 1 if any failed.
#
# The budget (GPU runs): 510 s from this script's start (the machine's start and the transfers not counted; the
# device tool stops a command at 600 s, and 510 s + a last step's 10 s kill grace + the 30 s summary stay under
# 9 minutes). Each step gets at most its CAP and never more than what is left of the 510 s; compile gets only
# what the others leave (at least 60 s, or it is skipped). Each cap is 1.5 to 4 times its step's estimate. There is
# no GPU here: the estimates scale the steps' CPU twins, measured on the 2-core development machine under a load
# of 6 to 8 (so slow; `--check` runs them), by the GPU machine's 16 cores, and add the GPU work by arithmetic:
#   wheels    30 s  pip install of the 37 MiB of .whl/: 3.5 s here
#   env       45 s  12.7 s here: torch's import 3.7 s, scipy.optimize 1.0, onnx 0.4; 122 modules 0.4 s;
#                   ~10 s there with CUDA's start
#   model    140 s  72 s here for a narrow GPEN-64 (bf16/fp16 convolutions crawl on a CPU). At 2048: a random
#                   state_dict 7 s and each of the 4 model builds 14 s here (2-4 s there), torch.save 1.3 s;
#                   t1.jpg's face 1 s; 0.42 TFLOP a face-forward (FlopCounter), ~60 timed (7 calls a row, 31
#                   faces in the bf16 rows, the reference's 7) at tens of ms each -> ~40 s there
#   pipeline 170 s  31 s here for 2 frames at 640x360. Its 4K input, 240 frames: 258 s here with x264's default
#                   preset (121 CPU s; 24 frames: 16.2 CPU s, veryfast 9.9, ultrafast 6.4, the render alone 4.0),
#                   so --clip-preset veryfast: ~100 CPU s -> ~15-25 s on 16 cores; random GPEN-2048 built and
#                   saved ~5 s; 480 face-forwards in bf16 beside 4K decode/faces/compose/encode -> ~30-40 s;
#                   ~80 s there
#   tests    110 s  7.5 s here (collection; all skipped without CUDA); there the torch.compile twin test (a cold
#                   inductor compile, each test under --timeout 90) dominates: ~60-80 s
#   compile  rest   a cold inductor compile of a narrow GPEN-64 on CPU took 2 min here (28.6 s with a warm cache);
#                   GPEN-2048 on 16 cores with Triton: ~60-150 s, so it runs only on what is left (~290 s expected)
# The caps before compile sum to 495 s. The old AGAINST= new/old runs (each bench twice, alternating) and the
# 1080p GPEN-512 pipeline do not fit the 9 minutes beside these steps and are gone: run
# bench/model_bench.py --against COMMIT in a device call of its own.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

check() {  # --check: a clean Python 3.12 venv of the GPU machine's packages, .whl/ as there, the steps on this CPU
  local py="" candidate venv pins site
  for candidate in "${PY312:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      py=$candidate && break
    fi
  done
  [ -n "$py" ] || { echo "gpu_suite --check: no Python 3.12 found (set PY312)" >&2; return 2; }
  venv=${GPU_CHECK_VENV:-$HOME/.cache/gpen-video/gpu-check-venv}
  pins=$(python3 bench/gpu_packages.py machine) || return 2
  if [ "$(cat "$venv/machine-pins.txt" 2>/dev/null)" != "$pins" ]; then
    echo "gpu_suite --check: building $venv from bench/gpu_packages.txt [machine] (torch with CUDA: ~3 GB, once)"
    rm -rf "$venv" && "$py" -m venv "$venv" || return 2
    env -u PYTHONPATH PYTHONNOUSERSITE=1 "$venv/bin/python" -m pip install -q $pins || return 2
    echo "$pins" >"$venv/machine-pins.txt"
  fi
  env -u PYTHONPATH PYTHONNOUSERSITE=1 python3 bench/gpu_packages.py venv "$venv/bin/python" || return 1
  echo "gpu_suite --check: $venv holds only the GPU machine's packages"
  bash bench/gpu_wheels.sh || return 2
  site=$(mktemp -d /tmp/gpu-suite-site.XXXXXX)
  env -u PYTHONPATH PYTHONNOUSERSITE=1 GPU_SUITE_DRY=1 PYTHON="$venv/bin/python" GPU_SUITE_SITE="$site" \
    OUT="${OUT:-bench/out/gpu-suite-check}" bash bench/gpu_suite.sh
  local status=$?
  rm -rf "$site"
  return $status
}
if [ "${1:-}" = "--check" ]; then
  check
  exit $?
fi

PYTHON=${PYTHON:-python3}
OUT=${OUT:-bench/out/gpu-suite}
DRY=${GPU_SUITE_DRY:-0}  # 1: --check's run: the same steps, tiny, on the CPU (a bigger budget: 2 slow cores)
BUDGET=${GPU_SUITE_BUDGET:-$([ "$DRY" = 1 ] && echo 900 || echo 510)}
SITE=${GPU_SUITE_SITE:-/tmp/site}
FRAMES=${GPU_SUITE_FRAMES:-240}
mkdir -p "$OUT"
LOG=$OUT/suite.log
FIGURES=$OUT/figures.jsonl
STEPS=$OUT/steps.tsv
: >"$LOG" && : >"$FIGURES" && printf 'step\tstatus\tseconds\tlimit_s\n' >"$STEPS"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
export PYTHONUNBUFFERED=1
failed=0

say() { echo "$*" | tee -a "$LOG"; }

step() {  # step NAME CAP [MIN] -- COMMAND...: at most CAP seconds, never past the deadline; skipped under MIN left
  local name=$1 cap=$2 min=10 now left limit t0 status word seconds
  shift 2
  if [ "$1" != "--" ]; then min=$1 && shift; fi
  shift
  now=$(date +%s)
  left=$((DEADLINE - now))
  limit=$((cap < left ? cap : left))
  if ((limit < min)); then
    say "== $name: skipped, ${left} s of the ${BUDGET} s budget left"
    printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >>"$STEPS"
    return 0
  fi
  say "== $name (at most ${limit} s, from +$((now - START)) s): $*"
  t0=$(date +%s.%N)
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  status=${PIPESTATUS[0]}
  seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  case $status in
    0) word=ok ;;
    124 | 137) word=timeout && failed=1 ;;
    *) word="failed-$status" && failed=1 ;;
  esac
  say "== $name: $word in $seconds s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$word" "$seconds" "$limit" >>"$STEPS"
  printf '{"bench": "step", "step": "%s", "status": "%s", "seconds": %s, "limit_s": %s}\n' \
    "$name" "$word" "$seconds" "$limit" >>"$FIGURES"
}

say "gpu_suite: $(date -u +%FT%TZ), $([ "$DRY" = 1 ] && echo "CHECK RUN (CPU, tiny sizes)" || echo "GPU run"), budget" \
  "$BUDGET s, $PYTHON ($("$PYTHON" --version 2>&1)), out $OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  step wheels 30 -- "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl
  export PYTHONPATH=$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}
else
  say "== no .whl/ here: the packages are taken as installed (bash bench/gpu_wheels.sh makes .whl/)"
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
gpu_tests=$(grep -l -E '@pytest\.mark\.gpu|pytestmark = .*pytest\.mark\.gpu' tests/test_*.py | tr '\n' ' ')
[ -n "$gpu_tests" ] || gpu_tests=tests/no-gpu-test-found  # a missing file fails the step (not the whole suite run)

if [ "$DRY" = 1 ]; then
  step env 120 -- "$PYTHON" bench/gpu_env.py --jsonl "$FIGURES" --cpu-ok
  # a narrow GPEN-64 (bf16 and fp16 convolutions crawl on a CPU), 2 frames through the pipeline in fp32
  step model 300 -- "$PYTHON" bench/model_bench.py --device cpu --sizes 64 --narrow 0.125 --rows fp32:1 bf16:1 \
    fp16:1 --face --ref-faces 1 --repeat 1 --warmup 0 --jsonl "$FIGURES"
  step pipeline 300 -- "$PYTHON" bench/pipeline_bench.py --sections 3 --scene two --width 640 --height 360 \
    --gpen-size 64 --device cpu --precision fp32 --frames 2 --preset veryfast --clip-preset veryfast \
    --no-sequential --jsonl "$FIGURES"
  # shellcheck disable=SC2086 # one word a file
  step tests 120 -- "$PYTHON" -m pytest -v -p no:cacheprovider -m gpu -rs --durations=5 --timeout 90 \
    --junitxml "$OUT/gpu-tests.xml" $gpu_tests
  step compile 400 60 -- "$PYTHON" bench/model_bench.py --device cpu --sizes 64 --narrow 0.125 --rows fp32:1 \
    --compile --ref-faces 0 --repeat 1 --warmup 0 --jsonl "$FIGURES"
else
  step env 45 -- "$PYTHON" bench/gpu_env.py --jsonl "$FIGURES"
  step model 140 -- "$PYTHON" bench/model_bench.py --device cuda --sizes 2048 --rows fp32:1 bf16:1,2,4,8,16 \
    fp16:1 --face --ref-faces 1 --repeat 5 --warmup 1 --jsonl "$FIGURES"
  step pipeline 170 -- "$PYTHON" bench/pipeline_bench.py --sections 3 --scene two --width 3840 --height 2160 \
    --gpen-size 2048 --device cuda --precision bf16 --batch-size 0 --frames "$FRAMES" --preset veryfast \
    --clip-preset veryfast --no-sequential --jsonl "$FIGURES"
  # shellcheck disable=SC2086 # one word a file
  step tests 110 -- "$PYTHON" -m pytest -v -p no:cacheprovider -m gpu -rs --durations=5 --timeout 90 \
    --junitxml "$OUT/gpu-tests.xml" $gpu_tests
  step compile 600 60 -- "$PYTHON" bench/model_bench.py --device cuda --sizes 2048 --rows bf16:4 --compile \
    --ref-faces 0 --repeat 5 --warmup 1 --jsonl "$FIGURES"
fi

say "== summary ($(($(date +%s) - START)) s of $BUDGET)"
timeout 30 "$PYTHON" bench/gpu_summary.py "$FIGURES" "$STEPS" 2>&1 | tee -a "$LOG"
exit $failed
