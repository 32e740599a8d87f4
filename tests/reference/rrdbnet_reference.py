"""Reference RRDBNet forward pass, written straight from the published architecture, for parity tests.

Credit: the architecture is ESRGAN's RRDBNet (Wang et al., "ESRGAN: Enhanced Super-Resolution Generative
Adversarial Networks", ECCVW 2018) as implemented in BasicSR, ``basicsr/archs/rrdbnet_arch.py``
(https://github.com/XPixelGroup/BasicSR, Apache License 2.0, Copyright Xintao Wang and the BasicSR authors),
which Real-ESRGAN and GPEN's ``sr_model/rrdbnet_arch.py`` use unchanged. BasicSR's own ``pixel_unshuffle``
(``arch_util.py``: ``view(b, c, h, s, w, s).permute(0, 1, 3, 5, 2, 4)``) is used for the ×2/×1 front end.

This file deliberately shares no code with ``gpen_video/models/rrdbnet.py``: it is a plain function over the
state dict (every key looked up by its official name), so a wrong key, a wrong residual scale, a wrong
concatenation order or a wrong unshuffle layout in the package shows up as a mismatch. The repository's tool
policy keeps third-party source out of commits, so BasicSR's file itself is not vendored here; a one-off
parity run against it is recorded in the closing note of issue 15.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _conv(state: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], stride=1, padding=1)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=0.2)


def basicsr_pixel_unshuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    b, c, hh, hw = x.size()
    h, w = hh // scale, hw // scale
    return x.view(b, c, h, scale, w, scale).permute(0, 1, 3, 5, 2, 4).reshape(b, c * scale * scale, h, w)


def residual_dense_block(state, prefix: str, x: torch.Tensor) -> torch.Tensor:
    x1 = _lrelu(_conv(state, f"{prefix}.conv1", x))
    x2 = _lrelu(_conv(state, f"{prefix}.conv2", torch.cat((x, x1), 1)))
    x3 = _lrelu(_conv(state, f"{prefix}.conv3", torch.cat((x, x1, x2), 1)))
    x4 = _lrelu(_conv(state, f"{prefix}.conv4", torch.cat((x, x1, x2, x3), 1)))
    x5 = _conv(state, f"{prefix}.conv5", torch.cat((x, x1, x2, x3, x4), 1))
    return x5 * 0.2 + x


def rrdb(state, prefix: str, x: torch.Tensor) -> torch.Tensor:
    out = residual_dense_block(state, f"{prefix}.rdb1", x)
    out = residual_dense_block(state, f"{prefix}.rdb2", out)
    out = residual_dense_block(state, f"{prefix}.rdb3", out)
    return out * 0.2 + x


def rrdbnet_forward(state: dict[str, torch.Tensor], x: torch.Tensor, scale: int, num_block: int) -> torch.Tensor:
    if scale == 2:
        feat = basicsr_pixel_unshuffle(x, 2)
    elif scale == 1:
        feat = basicsr_pixel_unshuffle(x, 4)
    else:
        feat = x
    feat = _conv(state, "conv_first", feat)
    body = feat
    for i in range(num_block):
        body = rrdb(state, f"body.{i}", body)
    feat = feat + _conv(state, "conv_body", body)
    feat = _lrelu(_conv(state, "conv_up1", F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = _lrelu(_conv(state, "conv_up2", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return _conv(state, "conv_last", _lrelu(_conv(state, "conv_hr", feat)))


def official_key_names(scale: int, num_feat: int, num_block: int, num_grow_ch: int, num_in_ch: int = 3):
    """Every (key, shape) of BasicSR's ``RRDBNet(num_in_ch, 3, scale, num_feat, num_block, num_grow_ch)``."""
    first_in = num_in_ch * {4: 1, 2: 4, 1: 16}[scale]
    keys: list[tuple[str, tuple[int, ...]]] = [("conv_first", (num_feat, first_in))]
    for i in range(num_block):
        for r in (1, 2, 3):
            for k in range(1, 6):
                cin = num_feat + (k - 1) * num_grow_ch
                cout = num_grow_ch if k < 5 else num_feat
                keys.append((f"body.{i}.rdb{r}.conv{k}", (cout, cin)))
    keys += [(n, (num_feat, num_feat)) for n in ("conv_body", "conv_up1", "conv_up2", "conv_hr")]
    keys.append(("conv_last", (3, num_feat)))
    out = []
    for name, (cout, cin) in keys:
        out.append((f"{name}.weight", (cout, cin, 3, 3)))
        out.append((f"{name}.bias", (cout,)))
    return out


def random_official_state_dict(
    scale: int, num_feat: int, num_block: int, num_grow_ch: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A small random checkpoint with the official key names and shapes (weights scaled to keep activations sane)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_key_names(scale, num_feat, num_block, num_grow_ch):
        fan_in = shape[1] * 9 if len(shape) == 4 else 1
        state[key] = torch.randn(shape, generator=g) * (0.5 / fan_in**0.5 if len(shape) == 4 else 0.05)
    return state
