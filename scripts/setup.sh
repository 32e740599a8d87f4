#!/usr/bin/env bash
# Set up gpen-video in ./.venv on a fresh machine.   Usage: bash scripts/setup.sh [--test]
#
# Both forms install exactly the versions in requirements/lock-cpu.txt (what the tests last passed with), as
# pip constraints: pyproject.toml keeps the ranges a library user gets; the lock makes a fresh clone install
# today what it installs next month. scripts/refresh_lock.sh moves the lock on.
#
# On a machine without an NVIDIA driver, the CPU build of torch is installed first (PyPI's default
# torch wheel pulls several GB of CUDA libraries), at the lock's version. Where nvidia-smi sees a GPU, pip's
# normal torch (with CUDA) of the lock's version is used, and an already installed torch of either kind is
# left alone (the rest of the lock still applies).
#
# GPEN_VIDEO_VENV (default .venv) is where the venv goes; GPEN_VIDEO_LOCK= (empty) installs from pyproject's
# ranges instead of the lock and GPEN_VIDEO_TORCH=cpu takes the CPU torch even beside a GPU, as
# scripts/refresh_lock.sh does; TORCH_CPU_VERSION (default: the lock's) picks another CPU torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${GPEN_VIDEO_VENV:-.venv}
LOCK=${GPEN_VIDEO_LOCK-requirements/lock-cpu.txt}
LOCKED_TORCH=$(sed -n "s/^torch==//p" requirements/lock-cpu.txt 2>/dev/null || true)
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-$LOCKED_TORCH}

if [ -n "$LOCK" ]; then
  py=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if ! grep -qE "^# python: .*\b${py//./\\.}\b" "$LOCK"; then
    echo "setup: $LOCK is for Python $(sed -n 's/^# python: //p' "$LOCK"), not $py: run with PYTHON=python3.11" \
      "(or install pyproject's ranges unlocked: GPEN_VIDEO_LOCK= bash scripts/setup.sh)" >&2
    exit 2
  fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
installed_torch() { "$VENV/bin/python" -c "import torch; print(torch.__version__)" 2>/dev/null || true; }

# The constraints: the lock, less its torch line where the torch in use is another version.
constraints=()
if [ -n "$LOCK" ]; then
  constraints=(-c "$LOCK")
  torch_in_use=$(installed_torch)
  torch_in_use=${torch_in_use:-$TORCH_CPU_VERSION}
  if [ "${torch_in_use%%+*}" != "$LOCKED_TORCH" ]; then
    echo "setup: torch $torch_in_use is not the lock's $LOCKED_TORCH; it is kept, the rest of the lock applies"
    grep -v '^torch==' "$LOCK" >"$VENV/constraints-without-torch.txt"
    constraints=(-c "$VENV/constraints-without-torch.txt")
  fi
fi

if [ -z "$(installed_torch)" ]; then
  if [ "${GPEN_VIDEO_TORCH:-auto}" != cpu ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found; torch with CUDA comes from the normal index"
  else
    echo "setup: no NVIDIA GPU; installing the CPU build of torch ${TORCH_CPU_VERSION}"
    pip install -q "${constraints[@]}" "torch==${TORCH_CPU_VERSION}+cpu" 2>/dev/null \
      || pip install -q "${constraints[@]}" "torch==${TORCH_CPU_VERSION}+cpu" \
        --extra-index-url https://download.pytorch.org/whl/cpu
  fi
fi

if [ "${1:-}" = "--test" ]; then
  pip install -q "${constraints[@]}" -e ".[test]"
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
  pip install -q "${constraints[@]}" -e .
fi
echo "setup: ready ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
