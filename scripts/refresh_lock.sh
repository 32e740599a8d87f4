#!/usr/bin/env bash
# Refresh requirements/lock-cpu.txt from pyproject.toml's ranges.   Usage: bash scripts/refresh_lock.sh
#
# Makes a fresh venv in a temporary folder, installs what `scripts/setup.sh --test` installs there (the CPU
# torch, then gpen-video[test]) from pyproject's ranges instead of the lock, checks it with `pip check`, and
# writes every installed distribution (transitive ones included; not pip, not gpen-video) as name==version.
# torch is written without its local label (2.13.0, not 2.13.0+cpu), so the same line constrains the CPU build
# setup.sh installs and the CUDA build pip takes beside a GPU. The `# python:` line lists the CPython versions
# for which PyPI has a wheel of every locked version (asked of pip with --dry-run; setup.sh refuses others).
# TORCH_CPU_VERSION=2.x picks another torch; PYTHON=python3.x another interpreter. Then run the whole test
# suite with the new lock (bash scripts/setup.sh --test in a fresh clone, or .ci/run) before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=requirements/lock-cpu.txt
PYTHONS_TRIED=${PYTHONS_TRIED:-3.10 3.11 3.12 3.13 3.14}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
venv=$work/venv

GPEN_VIDEO_VENV=$venv GPEN_VIDEO_LOCK='' GPEN_VIDEO_TORCH=cpu bash scripts/setup.sh --test
"$venv/bin/python" -m pip check

"$venv/bin/python" - "$work/pins.txt" <<'EOF'
import sys
from importlib.metadata import distributions

from packaging.utils import canonicalize_name

pins = {}
for dist in distributions():
    name = canonicalize_name(dist.metadata["Name"])
    if name not in ("pip", "gpen-video"):
        pins[name] = dist.version.split("+")[0] if name == "torch" else dist.version
with open(sys.argv[1], "w") as out:
    out.writelines(f"{name}=={version}\n" for name, version in sorted(pins.items()))
EOF

platforms=$("$venv/bin/python" -c 'from packaging.tags import sys_tags; print(" ".join(sorted({t.platform for t in sys_tags()})))')
platform_args=()
for p in $platforms; do platform_args+=(--platform "$p"); done
pythons=()
for v in $PYTHONS_TRIED; do
  if "$venv/bin/python" -m pip install -q --dry-run --ignore-installed --no-deps --only-binary=:all: \
    --target "$work/target" --implementation cp --python-version "$v" "${platform_args[@]}" \
    -r "$work/pins.txt" >/dev/null 2>&1; then
    pythons+=("$v")
  fi
done
echo "refresh_lock: wheels of every pinned version for CPython ${pythons[*]:-(none)}"
[ ${#pythons[@]} -gt 0 ] || { echo "refresh_lock: no CPython has wheels of every pin" >&2; exit 1; }

{
  echo "# The versions the tests pass with: pip constraints for scripts/setup.sh (pip install -c $LOCK ...)."
  echo "# Made by scripts/refresh_lock.sh from pyproject.toml's ranges on $(date -u +%Y-%m-%d); do not edit by hand."
  echo "# Every distribution installed on CPython, linux x86_64, with the CPU torch (torch's version only: its build"
  echo "# is setup.sh's choice; beside a GPU the CUDA torch brings its own nvidia-* pins)."
  echo "# python: ${pythons[*]}"
  cat "$work/pins.txt"
} >"$LOCK"
echo "refresh_lock: wrote $LOCK ($(grep -c '==' "$LOCK") pins); run the whole test suite with it before committing"
