"""RRDBNet, the background super-resolution network of Real-ESRGAN and of GPEN's ``sr_model`` (RealESRNet).

The module layout (and so every state-dict key) is the one of BasicSR's ``basicsr/archs/rrdbnet_arch.py``:
``conv_first``, ``body.{i}.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``,
``conv_last``. For ×2 the input is pixel-unshuffled by 2 first (12 input channels), as BasicSR does, and the
same two nearest-neighbour ×2 stages then give ×2 overall. Every size (features, blocks, growth channels,
scale) is read from the tensors, so the released files (``RealESRGAN_x4plus.pth``, ``RealESRGAN_x2plus.pth``,
GPEN's ``realesrnet_x2.pth``/``realesrnet_x4.pth``) load without flags. Files are read with
``torch.load(weights_only=True)``; ``params_ema`` is preferred over ``params`` when a file holds both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from gpen_video.errors import ModelError
from gpen_video.models.torch_file import load_torch_file

WRAPPERS = ("params_ema", "params", "state_dict", "model", "net_g")
PREFIXES = ("module.", "_orig_mod.")


class DenseBlock(nn.Module):
    """Five 3×3 convolutions, each seeing every earlier output; residual scaled by 0.2 (ESRGAN's RDB)."""

    def __init__(self, features: int, grow: int) -> None:
        super().__init__()
        for k in range(1, 5):
            setattr(self, f"conv{k}", nn.Conv2d(features + (k - 1) * grow, grow, 3, 1, 1))
        self.conv5 = nn.Conv2d(features + 4 * grow, features, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            outputs.append(F.leaky_relu(conv(torch.cat(outputs, 1)), 0.2))
        return self.conv5(torch.cat(outputs, 1)) * 0.2 + x


class ResidualInResidual(nn.Module):
    """Three dense blocks with an outer residual scaled by 0.2 (ESRGAN's RRDB)."""

    def __init__(self, features: int, grow: int) -> None:
        super().__init__()
        self.rdb1 = DenseBlock(features, grow)
        self.rdb2 = DenseBlock(features, grow)
        self.rdb3 = DenseBlock(features, grow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


@dataclass(frozen=True)
class RRDBConfig:
    """What an ``RRDBNet`` is built from; inferred from a checkpoint's tensors by ``infer_config``."""

    scale: int = 4  # 2 or 4 (1 is BasicSR's pixel-unshuffle-by-4 variant, also accepted)
    features: int = 64  # num_feat
    blocks: int = 23  # num_block
    grow: int = 32  # num_grow_ch
    in_channels: int = 3
    out_channels: int = 3

    def build(self) -> RRDBNet:
        return RRDBNet(self)

    def describe(self) -> str:
        return f"RRDBNet x{self.scale} ({self.blocks} blocks, {self.features} features)"


UNSHUFFLE = {4: 1, 2: 2, 1: 4}  # scale -> pixel-unshuffle factor in front of conv_first


class RRDBNet(nn.Module):
    """ESRGAN's generator: input (N, 3, H, W) RGB in [0, 1], output (N, 3, kH, kW), unclamped."""

    def __init__(self, config: RRDBConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or RRDBConfig()
        if config.scale not in UNSHUFFLE:
            raise ModelError(f"RRDBNet scale must be 1, 2 or 4, not {config.scale}")
        self.unshuffle = UNSHUFFLE[config.scale]
        f = config.features
        self.conv_first = nn.Conv2d(config.in_channels * self.unshuffle**2, f, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualInResidual(f, config.grow) for _ in range(config.blocks)))
        self.conv_body = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_hr = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_last = nn.Conv2d(f, config.out_channels, 3, 1, 1)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def multiple(self) -> int:
        """Input sides must be a multiple of this (the pixel-unshuffle factor)."""
        return self.unshuffle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


_BLOCK_KEY = re.compile(r"^body\.(\d+)\.")


def infer_config(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> RRDBConfig:
    """The network a state dict belongs to, from its tensor shapes; ``ModelError`` if it is not an RRDBNet."""
    needed = ("conv_first.weight", "conv_body.weight", "conv_last.weight", "body.0.rdb1.conv1.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise ModelError(
            f"{source} is not an RRDBNet (Real-ESRGAN/RealESRNet) checkpoint: no {', '.join(missing)}; "
            "use RealESRGAN_x2plus.pth, RealESRGAN_x4plus.pth or GPEN's realesrnet_x2/x4.pth"
        )
    features, first_in = state["conv_first.weight"].shape[:2]
    out_channels = state["conv_last.weight"].shape[0]
    grow = state["body.0.rdb1.conv1.weight"].shape[0]
    blocks = 1 + max(int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)))
    in_channels = out_channels
    ratio, rem = divmod(int(first_in), in_channels)
    scale = {1: 4, 4: 2, 16: 1}.get(ratio) if rem == 0 else None
    if scale is None:
        raise ModelError(f"{source}: conv_first takes {first_in} channels, which fits no RRDBNet scale (1, 2 or 4)")
    return RRDBConfig(scale, int(features), blocks, int(grow), in_channels, int(out_channels))


def unwrap_state_dict(raw: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a released or training file: ``params_ema`` first, then ``params``; prefixes stripped."""
    state = raw
    while isinstance(state, Mapping) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        key = next((k for k in WRAPPERS if k in state), None)
        if key is None:
            raise ModelError(f"{source}: no tensors found (keys: {', '.join(map(str, list(state)[:8]))})")
        state = state[key]
    if isinstance(state, Mapping) and "params_ema" in state:  # tensors beside the wrappers: still prefer EMA
        state = state["params_ema"]
    if not isinstance(state, Mapping):
        raise ModelError(f"{source}: expected a state_dict, found {type(state).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = value
    return out


def read_rrdb_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a Real-ESRGAN/RealESRNet ``.pth`` file, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"upscaler model file not found: {path}; run `gpen-video weights fetch` or pass its path")
    raw = load_torch_file(path)
    return unwrap_state_dict(raw, source=str(path))


def load_rrdbnet(path: str | Path, device: str | torch.device = "cpu") -> RRDBNet:
    """An RRDBNet in eval mode with the file's weights, every key checked (strict)."""
    state = read_rrdb_state_dict(path)
    return model_from_state_dict(state, source=str(path)).to(device)


def model_from_state_dict(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> RRDBNet:
    config = infer_config(state, source)
    model = config.build()
    try:
        result = model.load_state_dict(dict(state), strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise ModelError(f"{source}: does not match {config.describe()}: {str(exc).splitlines()[-1].strip()}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"{source}: does not match {config.describe()}: missing {result.missing_keys[:4]}, "
            f"unexpected {result.unexpected_keys[:4]}"
        )
    return model.eval().requires_grad_(False)
