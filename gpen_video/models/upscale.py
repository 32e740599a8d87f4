"""Background upscale: the whole frame k× larger, so restored faces can be pasted at the higher resolution.

One small interface, ``Upscaler.upscale(image) -> image`` ((H, W, 3) BGR uint8/uint16 in, (kH, kW, 3) of the
same dtype out), with two kinds behind it:

- ``LanczosUpscaler`` — OpenCV's Lanczos-4, embedded, offline, the default;
- ``RRDBUpscaler`` — a Real-ESRGAN/RealESRNet ``RRDBNet`` run tile by tile with an overlap, so the network's
  activations stay the size of one tile however large the frame (memory flat at 4K).

``scale_affine`` gives a face's frame→crop transform on the upscaled frame (pixel centres kept), which is what
``compose`` needs to paste GPEN's crop at the higher resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from gpen_video.errors import ConfigError
from gpen_video.models.rrdbnet import RRDBNet, load_rrdbnet

SCALES = (2, 4)
UPSCALER_NAMES = ("lanczos", "realesrgan-x2", "realesrgan-x4", "realesrnet-x2", "realesrnet-x4")


class Upscaler(Protocol):
    """Turns an (H, W, 3) BGR uint8/uint16 frame into a (scale·H, scale·W, 3) one of the same dtype."""

    name: str
    scale: int

    def upscale(self, image: np.ndarray) -> np.ndarray: ...


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected an (H, W, 3) uint8/uint16 frame, got {image.shape} {image.dtype}")


@dataclass
class LanczosUpscaler:
    """OpenCV ``INTER_LANCZOS4``: sharp, no model, exact output size."""

    scale: int = 2
    name: str = "lanczos"

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"--upscale must be one of {', '.join(map(str, SCALES))}, not {self.scale}")

    def upscale(self, image: np.ndarray) -> np.ndarray:
        _check_image(image)
        height, width = image.shape[:2]
        return cv2.resize(image, (width * self.scale, height * self.scale), interpolation=cv2.INTER_LANCZOS4)


@dataclass(frozen=True)
class Tile:
    """One tile: the input window it owns ``[y0:y1, x0:x1]`` and the padded window run through the network."""

    y0: int
    y1: int
    x0: int
    x1: int
    py0: int
    py1: int
    px0: int
    px1: int


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> list[Tile]:
    """Tiles covering the frame; each padded by ``overlap`` of context (clipped), edges on ``multiple``."""
    if tile <= 0:
        return [Tile(0, height, 0, width, 0, height, 0, width)]
    tile = max(multiple, tile - tile % multiple)
    overlap = overlap + (-overlap) % multiple
    tiles = []
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            pad = (max(y0 - overlap, 0), min(y1 + overlap, height), max(x0 - overlap, 0), min(x1 + overlap, width))
            tiles.append(Tile(y0, y1, x0, x1, *pad))
    return tiles


class RRDBUpscaler:
    """An RRDBNet over overlapping tiles; only each tile's own window of the output is kept."""

    def __init__(
        self,
        model: RRDBNet,
        name: str = "realesrgan",
        tile: int = 256,
        overlap: int = 16,
        device: str | torch.device = "cpu",
        precision: torch.dtype = torch.float32,
    ) -> None:
        self.model = model.to(device=device, dtype=precision).eval().requires_grad_(False)
        self.name = name
        self.scale = model.scale
        if self.scale not in SCALES:
            raise ConfigError(f"{name}: an x{self.scale} network cannot serve --upscale (2 or 4)")
        self.tile = tile
        self.overlap = overlap
        self.device = torch.device(device)
        self.precision = precision
        self.largest_input: tuple[int, int] = (0, 0)  # largest padded tile run so far (memory check)

    @classmethod
    def from_file(cls, path, name: str = "realesrgan", **kwargs) -> RRDBUpscaler:
        return cls(load_rrdbnet(path), name=name, **kwargs)

    @torch.inference_mode()
    def upscale(self, image: np.ndarray) -> np.ndarray:
        _check_image(image)
        top = 65535.0 if image.dtype == np.uint16 else 255.0
        height, width = image.shape[:2]
        k = self.scale
        out = np.empty((height * k, width * k, 3), image.dtype)
        multiple = self.model.multiple
        for t in plan_tiles(height, width, self.tile, self.overlap, multiple):
            window = image[t.py0 : t.py1, t.px0 : t.px1, ::-1]  # BGR -> RGB
            x = torch.from_numpy(np.ascontiguousarray(window)).to(self.device)
            x = x.permute(2, 0, 1)[None].to(self.precision) / top
            ph, pw = (-x.shape[2]) % multiple, (-x.shape[3]) % multiple  # frame edge off the unshuffle grid
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="reflect")
            self.largest_input = max(self.largest_input, (x.shape[2], x.shape[3]))
            y = self.model(x)[0].float().clamp_(0.0, 1.0).mul_(top).round_()
            y = y[:, (t.y0 - t.py0) * k : (t.y1 - t.py0) * k, (t.x0 - t.px0) * k : (t.x1 - t.px0) * k]
            out[t.y0 * k : t.y1 * k, t.x0 * k : t.x1 * k] = (
                y.permute(1, 2, 0).flip(-1).cpu().numpy().astype(image.dtype)
            )
        return out


def scale_affine(affine: np.ndarray, factor: float) -> np.ndarray:
    """A frame→crop transform (2×3 or N×2×3) re-expressed on the frame upscaled by ``factor``.

    Pixel centres are kept: frame pixel ``p = (p_up + 0.5) / factor - 0.5``, so ``crop = A p + t`` becomes
    ``crop = (A / factor) p_up + t + A (0.5 / factor - 0.5)``.
    """
    a = np.asarray(affine, np.float64)
    out = a.copy()
    linear = a[..., :, :2]
    out[..., :, 2] = a[..., :, 2] + linear @ np.full(2, 0.5 / factor - 0.5)
    out[..., :, :2] = linear / factor
    return out


def make_upscaler(name: str, scale: int, model_path=None, **kwargs) -> Upscaler:
    """The upscaler a run asked for: ``lanczos`` needs nothing; the networks need their file's path."""
    if scale not in SCALES:
        raise ConfigError(f"--upscale must be one of {', '.join(map(str, SCALES))}, not {scale}")
    if name == "lanczos":
        return LanczosUpscaler(scale)
    if name not in UPSCALER_NAMES:
        raise ConfigError(f"unknown upscaler '{name}'; choose one of: {', '.join(UPSCALER_NAMES)}")
    if not name.endswith(f"x{scale}"):
        raise ConfigError(f"upscaler '{name}' does not match --upscale {scale}; use the x{scale} network or lanczos")
    if model_path is None:
        raise ConfigError(f"upscaler '{name}' needs its model file; run `gpen-video weights fetch {name}`")
    return RRDBUpscaler.from_file(model_path, name=name, **kwargs)
