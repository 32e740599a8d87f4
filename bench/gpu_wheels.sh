#!/usr/bin/env bash
# Fill .whl/ with the wheels bench/gpu_suite.sh carries to the lent GPU machine, which has no network:
#
#   bash bench/gpu_wheels.sh
#
# The list is bench/gpu_packages.txt's [carry] (the packages that machine lacks, at the lock's versions); each is
# fetched as one wheel for its python3 (CPython 3.12, manylinux x86_64), with --no-deps: every need is named in the
# list. Wheels of other versions or names are removed from .whl/, so it holds one version of each. .whl/ is ignored
# by git and travels with the device tool's carry (".whl"); the tree and it must stay under 64 MiB together.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
mkdir -p .whl
mapfile -t pins < <("$PYTHON" bench/gpu_packages.py carry)
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${pins[@]}"
"$PYTHON" bench/gpu_packages.py prune .whl
ls -1 .whl
echo "gpu_wheels: $(du -cb .whl/*.whl | tail -1 | cut -f1 | awk '{printf "%.1f MiB", $1 / 1048576}') in .whl/" \
  "(the device tool carries at most 64 MiB with the tree)"
