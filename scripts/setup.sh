#!/usr/bin/env bash
# Set up gpen-video in ./.venv on a fresh machine.   Usage: bash scripts/setup.sh [--test]
#
# On a machine without an NVIDIA driver, the CPU build of torch is installed first (PyPI's default
# torch wheel pulls several GB of CUDA libraries). Where nvidia-smi sees a GPU, pip's normal torch
# (with CUDA) is used, and an already installed torch of either kind is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found; torch with CUDA comes from the normal index"
  else
    echo "setup: no NVIDIA GPU; installing the CPU build of torch ${TORCH_CPU_VERSION}"
    pip install -q "torch==${TORCH_CPU_VERSION}+cpu" 2>/dev/null \
      || pip install -q "torch==${TORCH_CPU_VERSION}" --index-url https://download.pytorch.org/whl/cpu
  fi
fi

if [ "${1:-}" = "--test" ]; then
  pip install -q -e ".[test]"
  # The conformance tests check outputs with ffprobe, which only Debian's ffmpeg package has (the
  # imageio-ffmpeg wheel ships ffmpeg alone). CI runs as root on a fresh Debian machine.
  if ! command -v ffprobe >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      echo "setup: installing Debian's ffmpeg (for ffprobe)"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
    else
      echo "setup: ffprobe is missing; install your system's ffmpeg package for the conformance tests" >&2
    fi
  fi
else
  pip install -q -e .
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
