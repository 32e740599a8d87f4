"""bench/gpu_packages.txt, read: the GPU machine's packages and the wheels carried there (standard library only).

Used by bench/gpu_wheels.sh, ``bench/gpu_suite.sh --check`` and tests/test_gpu_suite.py:

    python3 bench/gpu_packages.py machine|carry     # its pins, one a line (for pip)
    python3 bench/gpu_packages.py prune .whl        # drop wheels no [carry] pin names; check each pin has one
    python3 bench/gpu_packages.py venv PYTHON       # every distribution PYTHON sees is one the machine has, at the pin
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

LIST = Path(__file__).resolve().with_name("gpu_packages.txt")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def sections(path: Path = LIST) -> dict[str, list[str]]:
    """Section name -> its entries: ``name==version`` lines for [machine] and [carry], names for [also-there]."""
    found: dict[str, list[str]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            found[current] = []
        elif current is None:
            raise ValueError(f"{path.name}: '{line}' before any [section]")
        elif current == "also-there":
            found[current] += line.split()
        else:
            found[current].append(line)
    return found


def pins(section: str, path: Path = LIST) -> dict[str, str]:
    """Canonical name -> version of a section's ``name==version`` lines."""
    out: dict[str, str] = {}
    for line in sections(path)[section]:
        match = PIN.match(line)
        if not match:
            raise ValueError(f"{path.name} [{section}]: '{line}' is not name==version")
        out[canonical(match[1])] = match[2]
    return out


def machine_names(path: Path = LIST) -> set[str]:
    """Every distribution the GPU machine holds, by canonical name."""
    return set(pins("machine", path)) | {canonical(n) for n in sections(path)["also-there"]}


def wheel_name_version(wheel: Path) -> tuple[str, str]:
    name, version = wheel.name.split("-")[:2]
    return canonical(name), version


def prune(folder: Path) -> int:
    """Delete wheels no [carry] pin names (another version, or dropped); 1 if a pin has no wheel."""
    wanted = pins("carry")
    have: set[str] = set()
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel_name_version(wheel)
        if wanted.get(name) == version:
            have.add(name)
        else:
            print(f"gpu_packages: removing {wheel.name} (not in [carry])")
            wheel.unlink()
    missing = sorted(set(wanted) - have)
    for name in missing:
        print(f"gpu_packages: no wheel for {name}=={wanted[name]} in {folder}", file=sys.stderr)
    return 1 if missing else 0


def check_venv(python: str) -> int:
    """1 if ``python`` sees a distribution the machine lacks, or a [machine] pin at another version."""
    code = "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'] + '==' + d.version)"
    listing = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    machine, known = pins("machine"), machine_names()
    bad = 0
    for item in sorted(set(listing)):
        name, version = item.split("==", 1)
        key = canonical(name)
        if key not in known:
            print(f"gpu_packages: the venv holds {item}, which the GPU machine lacks", file=sys.stderr)
            bad = 1
        elif key in machine and machine[key] != version.split("+")[0]:
            print(f"gpu_packages: the venv holds {item}, the list says {machine[key]}", file=sys.stderr)
            bad = 1
    return bad


def main(argv: list[str]) -> int:
    if len(argv) == 1 and argv[0] in ("machine", "carry"):
        print("\n".join(f"{n}=={v}" for n, v in pins(argv[0]).items()))
        return 0
    if len(argv) == 2 and argv[0] == "prune":
        return prune(Path(argv[1]))
    if len(argv) == 2 and argv[0] == "venv":
        return check_venv(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
