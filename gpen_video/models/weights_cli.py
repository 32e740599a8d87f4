"""``gpen-video weights list | fetch NAME | verify PATH|NAME | export-onnx CKPT OUT.onnx`` (GPEN and upscalers).

CLI code: it prints its results to stdout. Failures raise ``GpenVideoError`` subclasses whose one-line
message the main CLI prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpen_video.errors import ConfigError, ModelError
from gpen_video.models.fetch import UNVERIFIED
from gpen_video.models.registry import REGISTRY, ModelEntry, find_file, get_entry, locate, search_dirs


def add_parser(subparsers) -> None:
    """Add the ``weights`` command (with its sub-commands) to an argparse ``add_subparsers()`` object."""
    weights = subparsers.add_parser("weights", help="list, download, verify and convert model files")
    sub = weights.add_subparsers(dest="weights_command", metavar="{list,fetch,verify,export-onnx}")
    sub.required = True

    def weights_dir_option(p: argparse.ArgumentParser) -> None:
        # SUPPRESS: a --weights-dir given to the main parser is not overwritten by this sub-parser's default
        p.add_argument("--weights-dir", default=argparse.SUPPRESS, help="folder searched first for model files")

    p_list = sub.add_parser("list", help="known models, where their files are, and their hashes")
    weights_dir_option(p_list)

    p_fetch = sub.add_parser("fetch", help="download a model (resumes, checks the hash)")
    p_fetch.add_argument("name", help="registry name, e.g. gpen-bfr-2048 or realesrgan-x2")
    weights_dir_option(p_fetch)

    p_verify = sub.add_parser(
        "verify", help="check a model file: hash, and that it is a usable GPEN or RRDBNet network"
    )
    p_verify.add_argument("target", metavar="PATH|NAME")
    weights_dir_option(p_verify)

    p_export = sub.add_parser("export-onnx", help="export a GPEN checkpoint to ONNX (input 'input', output 'output')")
    p_export.add_argument("checkpoint", metavar="CKPT", help=".pth/.pt/.safetensors file or registry name")
    p_export.add_argument("output", metavar="OUT.onnx")
    p_export.add_argument("--opset", type=int, default=17)
    p_export.add_argument(
        "--size-check",
        "--check",
        dest="check",
        action="store_true",
        help="run the exported file in onnxruntime and compare it with PyTorch",
    )
    weights_dir_option(p_export)


def run(args: argparse.Namespace) -> int:
    """Run the ``weights`` sub-command in ``args``; returns the exit code."""
    command = getattr(args, "weights_command", None)
    weights_dir = getattr(args, "weights_dir", None)
    if command == "list":
        return _list(weights_dir)
    if command == "fetch":
        return _fetch(args.name, weights_dir, progress=sys.stderr.isatty() and not getattr(args, "quiet", False))
    if command == "verify":
        return _verify(args.target, weights_dir)
    if command == "export-onnx":
        return _export(args.checkpoint, args.output, args.opset, args.check, weights_dir)
    raise ConfigError("weights: choose one of list, fetch, verify, export-onnx")


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def hash_source(entry: ModelEntry) -> str:
    """How ``fetch`` checks an entry's file, in words for ``list``."""
    if entry.sha256:
        return f"sha256 {entry.sha256[:16]}…"
    if entry.sha256_lists:
        return "sha256 from ModelScope's list"
    if entry.crc32_urls:
        return "crc32 from FaceFusion's .hash"
    return UNVERIFIED


def _list(weights_dir: str | None) -> int:
    _out(
        f"{'name':<20} {'file':<24} {'px':>5} {'cm':>3} {'narrow':>6} {'MB':>5} {'template':<11} {'check':<34} present"
    )
    for entry in REGISTRY:
        path = find_file(entry.filenames, weights_dir)
        mb = str(round(entry.file_bytes / 1e6)) if entry.file_bytes else f"~{entry.approx_mb}"
        if entry.is_upscaler:  # an RRDBNet: its scale in the px column, no GPEN numbers, no face template
            px, cm, narrow, template = f"x{entry.scale}", "-", "-", "upscaler"
        else:
            px, cm, narrow = str(entry.size), f"{entry.channel_multiplier:g}", f"{entry.narrow:g}"
            template = entry.template
        _out(
            f"{entry.name:<20} {entry.filename:<24} {px:>5} {cm:>3} {narrow:>6} {mb:>5} {template:<11} "
            f"{hash_source(entry):<34} {path if path else 'no'}"
        )
    _out()
    for entry in REGISTRY:
        if entry.alt_filenames:
            _out(f"{entry.name} is also found as: {', '.join(entry.alt_filenames)}")
    _out("searched, in order: " + ", ".join(str(d) for d in search_dirs(weights_dir)))
    return 0


def _fetch(name: str, weights_dir: str | None, progress: bool) -> int:
    from gpen_video.models.fetch import fetch_model

    result = fetch_model(name, weights_dir, progress=progress)
    state = "downloaded to" if result.downloaded else "already present:"
    _out(f"{name}: {state} {result.path}")
    check = result.describe() if result.verified else "; ".join((UNVERIFIED, *result.checks))
    _out(f"sha256 {result.sha256} ({check})")
    return 0


def _resolve(target: str, weights_dir: str | None) -> tuple[Path, str | None]:
    path = Path(target).expanduser()
    if path.is_file():
        entry = REGISTRY.by_filename(path.name)
        return path, entry.name if entry else None
    if REGISTRY.get(target) is not None:
        return locate(target, weights_dir), get_entry(target).name
    raise ModelError(f"{target}: no such file and not a known model name; see: gpen-video weights list")


def _holds_rrdbnet(path: Path) -> bool:
    """Whether a PyTorch file reads (``weights_only``) as an RRDBNet's tensors; False for anything else."""
    from gpen_video.models.rrdbnet import read_rrdb_state_dict

    try:
        return "conv_first.weight" in read_rrdb_state_dict(path)
    except ModelError:
        return False


def _verify_upscaler(path: Path, entry: ModelEntry | None) -> int:
    """An RRDBNet file: strict official keys, and the entry's scale when the file is a registry one."""
    from gpen_video.models.fetch import check_upscaler
    from gpen_video.models.rrdbnet import load_rrdbnet

    model = load_rrdbnet(path)
    params = sum(p.numel() for p in model.parameters())
    _out(f"{model.config.describe()}, {params:,} parameters, official keys: OK")
    if entry is not None:
        check_upscaler(entry, path)
        _out(f"scale matches {entry.name}")
    return 0


def _verify(target: str, weights_dir: str | None) -> int:
    from gpen_video.models.fetch import check_present

    path, name = _resolve(target, weights_dir)
    entry = get_entry(name) if name else None
    is_onnx = path.suffix.lower() == ".onnx"
    if (entry is not None and entry.is_upscaler) or (entry is None and not is_onnx and _holds_rrdbnet(path)):
        result = check_present(entry, path) if entry is not None else None
        digest = result.sha256 if result is not None else sha256_of(path)
        _out(f"{path}: {path.stat().st_size} bytes, sha256 {digest}")
        if result is not None:
            _out(f"{entry.name}: {result.describe()}")
        return _verify_upscaler(path, entry)
    if entry is not None:
        result = check_present(entry, path)  # the published sha256, a .hash file beside it
        digest = result.sha256
    else:
        result, digest = None, sha256_of(path)
    _out(f"{path}: {path.stat().st_size} bytes, sha256 {digest}")
    if result is not None:
        _out(f"{entry.name}: {result.describe()}")
    if path.suffix.lower() == ".onnx":
        from gpen_video.models.onnx_backend import OnnxRestorer

        restorer = OnnxRestorer(path)
        batch = restorer.fixed_batch or "dynamic"
        _out(f"ONNX GPEN restorer: {restorer.size}×{restorer.size}, batch {batch}, input '{restorer.input_name}'")
        size = restorer.size
    else:
        from gpen_video.models.checkpoint import check_architecture, load_generator

        model, config = load_generator(path)
        params = sum(p.numel() for p in model.parameters())
        _out(f"{config.describe()}, n_mlp={config.n_mlp}, style_dim={config.style_dim}, {params:,} parameters: OK")
        size = config.size
        if entry and entry.size == size:
            check_architecture(path, entry.architecture, entry.name)
            _out(f"tensors match {entry.name}")
    if entry and entry.size != size:
        raise ModelError(f"{path} is a {size}-px network but {entry.name} is {entry.size} px; the file is misnamed")
    return 0


def sha256_of(path: Path) -> str:
    from gpen_video.models.fetch import sha256_file

    return sha256_file(path)


def _export(checkpoint: str, output: str, opset: int, check: bool, weights_dir: str | None) -> int:
    from gpen_video.models.onnx_export import export_onnx

    path, name = _resolve(checkpoint, weights_dir)
    if name and get_entry(name).is_upscaler:
        raise ConfigError(f"{name} is a background upscaler, not a GPEN checkpoint; export-onnx converts GPEN only")
    if path.suffix.lower() == ".onnx":
        raise ConfigError(f"{path} is already an ONNX file; give a .pth/.pt/.safetensors checkpoint")
    result = export_onnx(path, output, opset=opset, check=check)
    _out(f"wrote {result.path} ({result.config.describe()}, opset {result.opset}, input 'input', output 'output')")
    if result.max_abs_diff is not None:
        _out(f"onnxruntime vs PyTorch: max abs difference {result.max_abs_diff:.3g}")
        if result.max_abs_diff > 1e-2:
            raise ModelError(f"{result.path} differs from PyTorch by {result.max_abs_diff:.3g}; the export is wrong")
    return 0
