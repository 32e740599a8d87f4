"""Read GPEN checkpoints safely and work out which network they belong to.

Released files are plain state_dicts (``GPEN-BFR-512.pth``, ModelScope's ``pytorch_model-2048.pt``);
training checkpoints wrap them (``g_ema``, ``params_ema``, ``state_dict``) and DataParallel or
``torch.compile`` add prefixes. Every tensor shape is fixed by (size, channel multiplier, narrow,
n_mlp, style_dim), so those are inferred from the tensors and then the whole key set is checked:
``--model any.pth`` works without flags, and a wrong file gets an error that names what is off.

Pickles are read with ``torch.load(weights_only=True)``: a checkpoint can never run code.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from gpen_video.errors import DependencyError, ModelError
from gpen_video.models.gpen import FullGenerator, channel_table
from gpen_video.models.registry import Architecture
from gpen_video.models.torch_file import load_torch_file

log = logging.getLogger(__name__)

WRAPPER_KEYS = ("g_ema", "params_ema", "state_dict", "params", "model", "net_g", "generator_ema")
STRIP_PREFIXES = ("module.", "_orig_mod.")
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors",)


@dataclass(frozen=True)
class GpenConfig:
    """What a ``FullGenerator`` is built from; inferred from a checkpoint's tensors."""

    size: int
    channel_multiplier: float = 2
    narrow: float = 1.0
    n_mlp: int = 8
    style_dim: int = 512

    def build(self, device: str | torch.device | None = None) -> FullGenerator:
        with torch.device(device or "cpu"):
            return FullGenerator(
                self.size, self.style_dim, self.n_mlp, channel_multiplier=self.channel_multiplier, narrow=self.narrow
            )

    def describe(self) -> str:
        return f"GPEN {self.size} (channel_multiplier={_fmt(self.channel_multiplier)}, narrow={_fmt(self.narrow)})"


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt`` (plain or wrapped) or ``.safetensors`` file, on the CPU, unprefixed."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    raw = _read_safetensors(path) if path.suffix.lower() in SAFETENSORS_SUFFIXES else load_torch_file(path)
    return normalize_state_dict(raw, source=str(path))


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:  # pragma: no cover - safetensors is a hard dependency
        raise DependencyError("reading .safetensors needs the safetensors package: pip install safetensors") from exc
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot read {path}: truncated or not a safetensors file ({reason[:160]})") from exc


def normalize_state_dict(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap ``{'g_ema': ...}``-style containers and strip ``module.``/``_orig_mod.`` prefixes."""
    for _ in range(3):  # wrappers may nest, e.g. {'state_dict': {'g_ema': ...}}
        if not isinstance(obj, Mapping):
            break
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ModelError(f"{source} is not a GPEN generator: it holds no state_dict of tensors")
    tensors: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in STRIP_PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix) :], True
        tensors[name] = value
    if not tensors:
        keys = ", ".join(list(map(str, obj))[:5])
        raise ModelError(f"{source} is not a GPEN generator: no tensors found (top-level keys: {keys})")
    return tensors


def infer_config(state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> GpenConfig:
    """Size, channel multiplier, narrow, n_mlp and style_dim from tensor shapes alone."""
    needed = ("generator.input.input", "ecd0.0.0.weight", "final_linear.0.weight", "generator.style.1.weight")
    missing = [k for k in needed if k not in state_dict]
    if missing:
        sample = ", ".join(list(state_dict)[:4])
        raise ModelError(
            f"{source} is not a GPEN FullGenerator checkpoint: missing {', '.join(missing)} (it has keys like {sample})"
        )
    n_ecd = _count(state_dict, r"ecd(\d+)\.")
    n_rgb = _count(state_dict, r"generator\.to_rgbs\.(\d+)\.")
    size = 2 ** (n_ecd + 1)
    out_size = 2 ** (n_rgb + 2)
    if out_size != size:
        raise ModelError(
            f"{source} is a GPEN FullGenerator_SR ({size} px in, {out_size} px out), which draws random noise; "
            "only the same-size FullGenerator (every GPEN-BFR release) is supported"
        )
    if not 8 <= size <= 4096:
        raise ModelError(f"{source}: implausible GPEN size {size} from {n_ecd} encoder stages")
    style_dim = int(state_dict["generator.style.1.weight"].shape[0])
    n_mlp = _count(state_dict, r"generator\.style\.(\d+)\.weight", start=1)
    ch4 = int(state_dict["generator.input.input"].shape[1])
    observed = _encoder_channels(state_dict, size)
    narrow, cm = ch4 / 512, 2.0
    for n_candidate in _narrow_candidates(ch4):
        cm_candidate = observed[64] / (256 * n_candidate) if 64 in observed else 2.0
        if abs(cm_candidate - round(cm_candidate)) < 1e-3:
            cm_candidate = float(round(cm_candidate))
        table = channel_table(cm_candidate, n_candidate)
        if table[4] == ch4 and all(table[res] == ch for res, ch in observed.items()):
            narrow, cm = n_candidate, cm_candidate
            break
    config = GpenConfig(size=size, channel_multiplier=cm, narrow=narrow, n_mlp=n_mlp, style_dim=style_dim)
    log.debug("%s: inferred %s", source, config)
    return config


def _encoder_channels(state_dict: Mapping[str, torch.Tensor], size: int) -> dict[int, int]:
    """Output channels of each encoder stage, by the resolution it produces."""
    channels = {size: int(state_dict["ecd0.0.0.weight"].shape[0])}
    for i in range(1, int(math.log2(size)) - 1):
        weight = state_dict.get(f"ecd{i}.0.1.weight")
        if weight is not None and weight.ndim == 4:
            channels[size >> i] = int(weight.shape[0])
    return channels


def _narrow_candidates(ch4: int) -> list[float]:
    """Round values of ``narrow`` first (0.5, 0.25, ...), then the exact ratio, so ``describe()`` reads well."""
    exact = ch4 / 512
    rounded = [round(exact, d) for d in (1, 2, 3)]
    return [*rounded, exact]


def _count(state_dict: Mapping[str, torch.Tensor], pattern: str, start: int = 0) -> int:
    regex = re.compile(pattern)
    indices = {int(m.group(1)) for key in state_dict if (m := regex.match(key))}
    n = 0
    while start + n in indices:
        n += 1
    return n


def check_state_dict(
    model: FullGenerator, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Compare a checkpoint with the network key by key; raise ``ModelError`` naming what is off.

    The 4×4 blur-kernel buffers are constants of the network: a checkpoint may leave them out.
    """
    expected = model.state_dict()
    problems: list[str] = []
    missing = [k for k in expected if k not in state_dict and not k.endswith(".kernel")]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''})"
        )
    if mismatched:
        problems.append(f"{len(mismatched)} of the wrong shape ({'; '.join(mismatched[:2])})")
    if problems:
        raise ModelError(
            f"{source} does not match {_describe(model)}: keys {'; '.join(problems)}; is it a GPEN-BFR generator?"
        )
    for key, value in state_dict.items():
        if not torch.is_floating_point(value):
            raise ModelError(f"{source}: {key} holds {value.dtype} values, expected floating point weights")
    return dict(state_dict)


def _describe(model: FullGenerator) -> str:
    return GpenConfig(model.size, model.channel_multiplier, model.narrow, model.n_mlp, model.style_dim).describe()


def load_generator(
    path_or_state: str | Path | Mapping[str, torch.Tensor], device: str | torch.device = "cpu"
) -> tuple[FullGenerator, GpenConfig]:
    """A ready (eval, no-grad) ``FullGenerator`` in fp32 from a checkpoint file or a state_dict."""
    if isinstance(path_or_state, Mapping):
        source = "state_dict"
        state_dict = normalize_state_dict(path_or_state, source)
    else:
        source = str(path_or_state)
        state_dict = read_state_dict(path_or_state)
    config = infer_config(state_dict, source)
    with torch.device("meta"):
        skeleton = config.build("meta")
    state_dict = check_state_dict(skeleton, state_dict, source)
    model = config.build("cpu")
    result = model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=False)
    assert not result.unexpected_keys and all(k.endswith(".kernel") for k in result.missing_keys)
    bad = [k for k, v in model.state_dict().items() if not torch.isfinite(v).all()]
    if bad:
        raise ModelError(f"{source}: {len(bad)} tensors hold NaN/inf (first: {bad[0]}); the file is damaged")
    model.eval().requires_grad_(False)
    return model.to(device), config


@dataclass(frozen=True)
class CheckpointFacts:
    """What a checkpoint was found to hold."""

    config: GpenConfig
    tensors: int  # entries of the network's state_dict (blur-kernel buffers included)
    params: int  # learnable parameters in the file


def check_architecture(
    path_or_state: str | Path | Mapping[str, torch.Tensor], expected: Architecture, name: str, source: str | None = None
) -> CheckpointFacts:
    """Check that a checkpoint holds exactly the network ``expected`` describes, from its tensors' shapes.

    Nothing is built but a shape-only (meta) skeleton, so this is cheap even for a 285 MB file: a download
    is checked before it is accepted. Raises ``ModelError`` naming the difference ("misnamed" when the file
    holds another GPEN network).
    """
    if isinstance(path_or_state, Mapping):
        source = source or "state_dict"
        state_dict = normalize_state_dict(path_or_state, source)
    else:
        source = source or str(path_or_state)
        state_dict = read_state_dict(path_or_state)
    found = infer_config(state_dict, source)
    want = GpenConfig(expected.size, expected.channel_multiplier, expected.narrow, expected.n_mlp, expected.style_dim)
    if found != want:
        raise ModelError(
            f"{source} holds {found.describe()}, n_mlp={found.n_mlp}, style_dim={found.style_dim}, but {name} is "
            f"{want.describe()}, n_mlp={want.n_mlp}, style_dim={want.style_dim}; the file is misnamed or not {name}"
        )
    with torch.device("meta"):
        skeleton = want.build("meta")
    check_state_dict(skeleton, state_dict, source)
    tensors = len(skeleton.state_dict())
    params = sum(v.numel() for k, v in state_dict.items() if not k.endswith(".kernel"))
    counts = (("state_dict entries", tensors, expected.tensors), ("parameters", params, expected.params))
    for what, got, known in counts:
        if known is not None and got != known:
            raise ModelError(f"{source}: {got:,} {what}, but the released {name} has {known:,}; not that file")
    return CheckpointFacts(found, tensors, params)
