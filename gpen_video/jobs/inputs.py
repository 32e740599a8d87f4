"""Which files a batch job restores and where each output goes.

INPUTS may be video files, folders (searched recursively by extension) or manifests: ``.txt`` (one
path a line), ``.csv`` or ``.jsonl`` (an ``input`` column/key, an optional ``output``, and per-file
settings by config name such as ``compose.blend`` or by flag name such as ``crf``). Outputs mirror
the input tree under the output folder, so thousands of files keep their names and places; two
inputs that would land on the same output are refused up front rather than overwriting each other.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpen_video.config import alias_override, file_named_fields, load_config, per_job_fields
from gpen_video.errors import ConfigError, InputError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {
        *(".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".mxf", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg"),
        *(".vob", ".m2v", ".wmv", ".asf", ".flv", ".3gp", ".dv", ".nut", ".ogv", ".y4m", ".f4v", ".hevc", ".h264"),
        *(".264", ".265"),
    }
)
MANIFEST_EXTENSIONS = (".txt", ".csv", ".jsonl")
# containers a restored H.264/HEVC/intermediate stream cannot go back into: written as Matroska instead
_REWRAP_AS_MKV = frozenset(
    {".mpg", ".mpeg", ".vob", ".m2v", ".wmv", ".asf", ".dv", ".y4m", ".ogv", ".hevc", ".h264", ".264", ".265"}
)


@dataclass(frozen=True)
class BatchItem:
    """One input, its output, and the settings that differ for it (dotted config names)."""

    input: Path
    output: Path
    key: str  # stable name of the job record for this output
    overrides: dict[str, Any] = field(default_factory=dict)


def discover(inputs: list[str | Path], output_dir: Path, exclude: list[Path] | None = None) -> list[BatchItem]:
    """Expand INPUTS into batch items, in a stable order; raise InputError for what cannot be used."""
    output_dir = output_dir.resolve()
    skip = [p.resolve() for p in (exclude or [])] + [output_dir]
    items: list[BatchItem] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            items += _from_folder(path, output_dir, skip)
        elif path.suffix.lower() in MANIFEST_EXTENSIONS:
            items += _from_manifest(path, output_dir)
        else:
            items.append(_item(path, output_dir, Path(path.name)))
    if not items:
        raise InputError("no video files found in the inputs; give files, folders or a .txt/.csv/.jsonl manifest")
    _check_unique(items)
    return items


def _from_folder(folder: Path, output_dir: Path, skip: list[Path]) -> list[BatchItem]:
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in VIDEO_EXTENSIONS or path.name.startswith("."):
            continue
        resolved = path.resolve()
        if any(resolved.is_relative_to(s) for s in skip):
            continue
        found.append(_item(path, output_dir, path.relative_to(folder)))
    if not found:
        log.warning("%s: no video files (by extension) in this folder", folder)
    return found


def _from_manifest(manifest: Path, output_dir: Path) -> list[BatchItem]:
    rows = _read_manifest(manifest)
    items = []
    for line, row in rows:
        where = f"{manifest}:{line}"
        row = {str(k).strip(): v for k, v in row.items() if k is not None}
        name = row.pop("input", None) or row.pop("path", None)
        if not name or not str(name).strip():
            raise InputError(f"{where}: no input path (give an 'input' column or key)")
        path = Path(str(name).strip())
        if not path.is_absolute():
            path = manifest.parent / path
        if not path.is_file():
            raise InputError(f"{where}: {path}: no such file")
        out = row.pop("output", None)
        if out:
            rel = Path(str(out).strip())
            if rel.is_absolute() or ".." in rel.parts:
                raise InputError(f"{where}: 'output' must be a path inside the output folder, got {out}")
        else:
            try:
                rel = path.resolve().relative_to(manifest.parent.resolve())
            except ValueError:
                rel = Path(path.name)
        overrides = _overrides(row, where, manifest.parent)
        items.append(_item(path, output_dir, rel, overrides, keep_suffix=bool(out)))
    return items


def _read_manifest(manifest: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{manifest}: cannot read the manifest ({exc})") from exc
    suffix = manifest.suffix.lower()
    rows: list[tuple[int, dict[str, Any]]] = []
    if suffix == ".txt":
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                rows.append((number, {"input": line}))
    elif suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not ({"input", "path"} & {f.strip() for f in reader.fieldnames}):
            raise InputError(f"{manifest}: a CSV manifest needs a header row with an 'input' column")
        for number, row in enumerate(reader, 2):
            rows.append((number, {k: v for k, v in row.items() if v not in (None, "")}))
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{manifest}:{number}: not a JSON object ({exc})") from exc
            if not isinstance(row, dict):
                raise InputError(f"{manifest}:{number}: each line must be a JSON object with an 'input' key")
            rows.append((number, row))
    return rows


def _overrides(row: dict[str, Any], where: str, folder: Path) -> dict[str, Any]:
    """A row's per-file settings as dotted overrides, checked now (not halfway through the job); the files a
    setting names, relative to the manifest's ``folder`` as the inputs are (a ';' between several)."""
    overrides: dict[str, Any] = {}
    try:
        for name, value in row.items():
            dotted, value = alias_override(name, value, source=where)  # flag names (crf, no_smooth) or dotted
            if dotted in per_job_fields():
                raise InputError(f"{where}: '{name}' cannot be set per file in a batch job")
            if dotted in file_named_fields() and isinstance(value, str):
                value = ";".join(str(folder / part.strip()) for part in value.split(";") if part.strip())
            overrides[dotted] = value
        load_config(None, overrides, source=where)
    except ConfigError as exc:
        raise InputError(str(exc)) from exc
    return overrides


def output_name(rel: Path) -> Path:
    """The output's path relative to the output folder: the input's, in a container that can hold it."""
    if rel.suffix.lower() in _REWRAP_AS_MKV:
        return rel.with_suffix(".mkv")
    return rel


def _item(
    path: Path, output_dir: Path, rel: Path, overrides: dict[str, Any] | None = None, keep_suffix: bool = False
) -> BatchItem:
    rel_out = rel if keep_suffix else output_name(rel)
    return BatchItem(path, output_dir / rel_out, record_key(rel_out), overrides or {})


def record_key(rel_output: Path) -> str:
    """A file-system-safe, stable, unique name for an output's job record."""
    digest = hashlib.sha256(rel_output.as_posix().encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", rel_output.stem)[:40]
    return f"{stem}-{digest}"


def _check_unique(items: list[BatchItem]) -> None:
    seen: dict[Path, Path] = {}
    for item in items:
        out = item.output.resolve()
        if out in seen:
            raise InputError(
                f"{seen[out]} and {item.input} would both be written to {item.output}; "
                "give them distinct names (a manifest 'output' column) or run them as separate jobs"
            )
        if item.input.resolve() == out:
            raise InputError(f"{item.input}: the output would overwrite the input; choose another -o folder")
        seen[out] = item.input
