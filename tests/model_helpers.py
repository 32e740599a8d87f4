"""Test helpers for the GPEN model: random checkpoints and an independent reference forward.

``reference_forward`` is written from the spec's description of the official code, not from
``gpen_video.models.gpen``: functional, one face at a time, with the official per-sample grouped
convolution (weights modulated *and* demodulated per sample) and ``upfirdn2d_native``-style
zero-insert/pad/flipped-kernel FIR. It takes only a state_dict and the config numbers. It is also
the per-face baseline of ``bench/model_bench.py``.
"""

from __future__ import annotations

import http.server
import math
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


# ----------------------------------------------------------------------------------------- building


def random_state_dict(
    size: int, channel_multiplier: float = 2, narrow: float = 1.0, n_mlp: int = 8, seed: int = 0, style_dim: int = 512
) -> dict[str, torch.Tensor]:
    """A GPEN state_dict with random but well-scaled weights (nonzero noise weights and biases).

    Fresh StyleGAN2 init leaves the noise weights at zero (the encoder would not matter) and gives an output
    far outside [-1, 1]; the values here keep every path live and the output mostly inside the uint8 range.
    """
    from gpen_video.models.gpen import FullGenerator

    torch.manual_seed(seed)
    model = FullGenerator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier, narrow=narrow)
    sd = model.state_dict()
    g = torch.Generator().manual_seed(seed + 1)
    for key, value in sd.items():
        if key.endswith(".kernel"):
            continue
        if key.endswith("noise.weight"):
            value.copy_(torch.rand(value.shape, generator=g) * 0.6 + 0.2)
        elif key.endswith("modulation.bias"):
            value.copy_(1 + 0.2 * torch.randn(value.shape, generator=g))
        elif key.endswith("bias"):
            value.copy_(0.1 * torch.randn(value.shape, generator=g))
        elif key.startswith("generator.to_rgb") and key.endswith("conv.weight"):
            value.copy_(0.25 * torch.randn(value.shape, generator=g))
        else:
            value.copy_(torch.randn(value.shape, generator=g) * (100.0 if ".style." in key else 1.0))
    return {k: v.clone() for k, v in sd.items()}


def save_checkpoint(sd: dict[str, torch.Tensor], path: Path, wrap: str | None = None, prefix: str = "") -> Path:
    """Save like the released files (plain ``torch.save(state_dict)``), optionally wrapped/prefixed."""
    obj: dict = {prefix + k: v for k, v in sd.items()}
    if wrap:
        obj = {wrap: obj, "iter": 1000}
    torch.save(obj, path)
    return path


def random_faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random BGR crops (noise on gradients), uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([xx, yy, 1 - xx * yy], axis=-1) * 255
    faces = base[None] * rng.uniform(0.3, 1.0, size=(n, 1, 1, 3)) + rng.normal(0, 25, size=(n, size, size, 3))
    return np.clip(faces, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------- reference


def _make_kernel(k=(1, 3, 3, 1)) -> torch.Tensor:
    k = torch.tensor(k, dtype=torch.float64)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d_native(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    """Zero-insert upsample, pad, convolve each channel with the flipped kernel, decimate."""
    n, c, h, w = x.shape
    kernel = kernel.to(x)  # dtype and device
    out = x.reshape(n * c, 1, h, w)
    if up > 1:
        z = torch.zeros(n * c, 1, h * up, w * up, dtype=x.dtype, device=x.device)
        z[:, :, ::up, ::up] = out
        out = z
    out = F.pad(out, [pad[0], pad[1], pad[0], pad[1]])
    out = F.conv2d(out, torch.flip(kernel, [0, 1])[None, None])
    out = out[:, :, ::down, ::down]
    return out.reshape(n, c, out.shape[2], out.shape[3])


def _lrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.reshape(shape), 0.2) * SQRT2


def _linear(x, weight, bias, lr_mul=1.0, act=False):
    out = x @ (weight * (lr_mul / math.sqrt(weight.shape[1]))).t()
    if act:
        return _lrelu(out, bias * lr_mul)
    return out + bias * lr_mul


def _modconv(x, style, sd, prefix, demodulate=True, upsample=False):
    """Official ModulatedConv2d: per-sample modulated/demodulated weights, grouped conv over the batch."""
    weight = sd[prefix + ".weight"]  # (1, out, in, k, k)
    _, out_c, in_c, k, _ = weight.shape
    batch, _, h, w = x.shape
    s = _linear(style, sd[prefix + ".modulation.weight"], sd[prefix + ".modulation.bias"]).view(batch, 1, in_c, 1, 1)
    wgt = weight / math.sqrt(in_c * k * k) * s
    if demodulate:
        demod = torch.rsqrt(wgt.pow(2).sum([2, 3, 4]) + 1e-8)
        wgt = wgt * demod.view(batch, out_c, 1, 1, 1)
    if upsample:
        wgt = wgt.transpose(1, 2).reshape(batch * in_c, out_c, k, k)
        out = F.conv_transpose2d(x.reshape(1, batch * in_c, h, w), wgt, stride=2, padding=0, groups=batch)
        out = out.view(batch, out_c, out.shape[2], out.shape[3])
        return upfirdn2d_native(out, _make_kernel() * 4, pad=(1, 1))
    out = F.conv2d(
        x.reshape(1, batch * in_c, h, w), wgt.reshape(batch * out_c, in_c, k, k), padding=k // 2, groups=batch
    )
    return out.view(batch, out_c, h, w)


def _styled(x, style, noise, sd, prefix, upsample=False):
    out = _modconv(x, style, sd, prefix + ".conv", upsample=upsample)
    out = torch.cat([out, sd[prefix + ".noise.weight"] * noise], dim=1)
    return _lrelu(out, sd[prefix + ".activate.bias"])


def _to_rgb(x, style, skip, sd, prefix):
    out = _modconv(x, style, sd, prefix + ".conv", demodulate=False) + sd[prefix + ".bias"]
    if skip is not None:
        out = out + upfirdn2d_native(skip, _make_kernel() * 4, up=2, pad=(2, 1))
    return out


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """GPEN FullGenerator forward from a state_dict, exactly as the official code runs it (any batch)."""
    sd = {k: v.to(dtype) for k, v in sd.items()}
    x = x.to(dtype)
    log_size = int(math.log2(x.shape[-1]))
    feats = []
    out = x
    out = _lrelu(F.conv2d(out, sd["ecd0.0.0.weight"] / math.sqrt(3)), sd["ecd0.0.1.bias"])
    feats.append(out)
    for i in range(1, log_size - 1):
        out = upfirdn2d_native(out, _make_kernel(), pad=(2, 2))
        wgt = sd[f"ecd{i}.0.1.weight"]
        out = F.conv2d(out, wgt / math.sqrt(wgt.shape[1] * 9), stride=2)
        out = _lrelu(out, sd[f"ecd{i}.0.2.bias"])
        feats.append(out)
    flat = out.reshape(out.shape[0], -1)
    z = _linear(flat, sd["final_linear.0.weight"], sd["final_linear.0.bias"], act=True)
    # mapping network: PixelNorm then n_mlp equalized linears with lr_mul 0.01
    style = z * torch.rsqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"generator.style.{i}.weight" in sd:
        style = _linear(style, sd[f"generator.style.{i}.weight"], sd[f"generator.style.{i}.bias"], 0.01, act=True)
        i += 1
    noise = []
    for f in feats[::-1]:
        noise += [f, f]
    noise = noise[1:]
    const = sd["generator.input.input"].repeat(x.shape[0], 1, 1, 1)
    out = _styled(const, style, noise[0], sd, "generator.conv1")
    skip = _to_rgb(out, style, None, sd, "generator.to_rgb1")
    for k in range(log_size - 2):
        out = _styled(out, style, noise[2 * k + 1], sd, f"generator.convs.{2 * k}", upsample=True)
        out = _styled(out, style, noise[2 * k + 2], sd, f"generator.convs.{2 * k + 1}")
        skip = _to_rgb(out, style, skip, sd, f"generator.to_rgbs.{k}")
    return skip


def reference_restore(sd: dict[str, torch.Tensor], faces: np.ndarray, dtype=torch.float32) -> np.ndarray:
    """Official pre/post-processing around ``reference_forward``, one face at a time (as ``FaceGAN`` runs)."""
    outs = []
    for face in faces:
        t = torch.from_numpy(face.astype(np.float64) if dtype == torch.float64 else face.astype(np.float32)) / 255.0
        t = (t - 0.5) / 0.5
        t = t.permute(2, 0, 1).unsqueeze(0).flip(1)
        with torch.no_grad():
            y = reference_forward(sd, t, dtype)[0]
        y = y * 0.5 + 0.5
        y = y.permute(1, 2, 0).flip(2)
        outs.append((np.clip(y.numpy(), 0, 1) * 255).astype(np.uint8))
    return np.stack(outs)


# ------------------------------------------------------------------------------------ HTTP server

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, not a multiple of the chunk size


class Server:
    """A tiny HTTP server on 127.0.0.1 with Range support, switchable faults, and a request log."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[dict[str, str]] = []
        self.honour_range = True
        self.break_after: int | None = None  # send only this many bytes, then hang up
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server.requests.append({"path": self.path, "range": self.headers.get("Range", "")})
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.break_after is not None:
                    self.wfile.write(body[: server.break_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
