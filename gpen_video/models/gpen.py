"""The GPEN blind-face-restoration network (``FullGenerator``), compatible with the official checkpoints.

Module and parameter names, shapes and numerics follow ``yangxy/GPEN`` ``face_model/gpen_model.py``
(a rosinality StyleGAN2 generator whose noise inputs are the feature maps of a strided-conv encoder),
so a released ``GPEN-BFR-*.pth`` loads with a strict ``load_state_dict``. Two things differ on purpose:

* Modulated convolution runs a batch as ordinary convolutions with shared weights: the input is scaled
  by the style, the output by the demodulation factor. That is the same function as the official
  per-sample grouped convolution, but lets cuDNN/oneDNN pick fast batched kernels and works with
  ``channels_last``, fp16/bf16 and ``torch.compile``.
* ``upfirdn2d`` and the fused bias + leaky ReLU are plain PyTorch; there is no CUDA extension to build.
* In fp16 a demodulated conv first scales its weights and styles to at most 1, as StyleGAN2-ADA does
  (``prenormalised``): demodulation cancels the scale, and the sums stay inside fp16's range.

Nothing is random: the encoder features are the noise inputs, so the same crop gives the same output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
BLUR_KERNEL = (1, 3, 3, 1)


def channel_table(channel_multiplier: float = 2, narrow: float = 1.0) -> dict[int, int]:
    """Channels per resolution, exactly as the official code computes them (``int()`` truncation)."""
    cm = channel_multiplier
    return {
        4: int(512 * narrow),
        8: int(512 * narrow),
        16: int(512 * narrow),
        32: int(512 * narrow),
        64: int(256 * cm * narrow),
        128: int(128 * cm * narrow),
        256: int(64 * cm * narrow),
        512: int(32 * cm * narrow),
        1024: int(16 * cm * narrow),
        2048: int(8 * cm * narrow),
        4096: int(4 * cm * narrow),
    }


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """2-D FIR kernel from a 1-D one (outer product), normalised to sum 1."""
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2) -> torch.Tensor:
    """``sqrt(2) * leaky_relu(x + bias)`` with ``bias`` per channel (dim 1), as StyleGAN2's fused op."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape).to(x.dtype), negative_slope) * SQRT2


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter each channel, downsample: StyleGAN2's ``upfirdn2d``.

    Same result as ``upfirdn2d_native`` for non-negative padding (all GPEN uses). Upsampling runs as a
    strided depthwise transposed convolution, so the inserted zeros are never materialised.
    """
    channels = int(x.shape[1])  # a constant, so ONNX export sees a static depthwise kernel
    kh, kw = kernel.shape
    pad0, pad1 = pad
    if min(pad0, pad1) < 0 or kh != kw:
        raise ValueError("upfirdn2d here supports square kernels and non-negative padding only")
    weight = kernel.to(dtype=x.dtype, device=x.device)
    if up > 1 and pad0 <= kh - 1 and pad1 <= kh - up:
        # zero insertion + pad + true convolution == transposed convolution, cropped to the padded window
        out = F.conv_transpose2d(x, weight.view(1, 1, kh, kw).expand(channels, 1, kh, kw), stride=up, groups=channels)
        top = kh - 1 - pad0
        h = x.shape[2] * up + pad0 + pad1 - kh + 1
        w = x.shape[3] * up + pad0 + pad1 - kw + 1
        out = out[:, :, top : top + h, top : top + w]
        return out[:, :, ::down, ::down] if down > 1 else out
    if up > 1:
        n, c, h, w = x.shape
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    weight = torch.flip(weight, [0, 1]).view(1, 1, kh, kw).expand(channels, 1, kh, kw)
    if pad0 == pad1:  # let the convolution pad: no padded copy of the input
        return F.conv2d(x, weight, stride=down, padding=pad0, groups=channels)
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    return F.conv2d(x, weight, stride=down, groups=channels)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """2× FIR upsampling of the ToRGB skip connection."""

    def __init__(self, kernel: Sequence[int], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor**2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with the equalized-learning-rate scale applied at run time (weights are stored unscaled)."""

    def __init__(
        self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0,
        lr_mul: float = 1,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.weight.dtype)  # linears may stay fp32 while the convs run in fp16/bf16
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, bias) if bias is not None else F.leaky_relu(out, 0.2) * SQRT2
        return F.linear(x, self.weight * self.scale, bias=bias)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution, batched: ``conv(x * style, W) * demod`` instead of grouped conv."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[int] = BLUR_KERNEL,
    ) -> None:
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate
        #: scale weights and styles to at most 1 before a demodulated conv (``prenormalised``); None: in fp16 only
        self.prenormalise: bool | None = None

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        out, demod = self.raw(x, style, gain)
        return out if demod is None else out * demod.to(out.dtype)[:, :, None, None]

    def raw(self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution before demodulation, and the (N, out) demodulation factors (None if not demodulated).

        ``gain`` scales the input (the caller's activation gain, folded into the style so it costs no pass).
        Demodulation is a per-(sample, channel) factor, so it commutes with the blur and can be applied by the
        caller in a fused epilogue.
        """
        s = self.modulation(style)  # (N, in), fp32 linears
        prenormalise = self.prenormalise if self.prenormalise is not None else x.dtype == torch.float16
        if self.demodulate and prenormalise:
            weight, s = prenormalised(self.weight[0], s, self.scale)
        else:
            weight = self.weight[0] * self.scale  # (out, in, k, k), shared by the batch
        x = x * (s * gain).to(x.dtype)[:, :, None, None]
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2, padding=0)
            out = self.blur(out)
        else:
            out = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if not self.demodulate:
            return out, None
        # sum_{in,kh,kw} (W s)^2 = (s^2) @ sum_{kh,kw} W^2, in fp32 for low-precision safety
        w2 = weight.float().pow(2).sum(dim=(2, 3))  # (out, in)
        return out, torch.rsqrt(s.float().pow(2) @ w2.t() + self.eps)


def prenormalised(weight: torch.Tensor, styles: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2-ADA's guard against fp16 overflow in a demodulated conv (``modulated_conv2d``, NVlabs
    stylegan2-ada-pytorch): each output channel's weights scaled to ``max |w| = scale`` (``1/sqrt(in·k²)``) and
    each face's styles to ``max |s| = 1``, so ``conv(x·s, W)`` sums at most ``in·k²`` terms no larger than
    ``|x|/sqrt(in·k²)``. Demodulation divides by the norm of ``W·s``, so a factor per (face, output channel)
    cancels: the same function, up to the ``1e-8`` inside the root. Computed in fp32 (``weight``: (out, in, k, k)
    unscaled, ``styles``: (N, in)); returns the weight to convolve with (scale included) and the styles.
    """
    weight = weight.float()
    peak = weight.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-30)
    styles = styles.float()
    return weight * (scale / peak), styles / styles.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)


def _fast_eager() -> bool:
    """In-place/out= kernels are safe: plain inference, not tracing (ONNX), compiling or recording gradients."""
    if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    return not _is_compiling()


def _is_compiling() -> bool:
    check = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch >= 2.3
    if check is None:  # pragma: no cover - older torch
        check = getattr(getattr(torch, "_dynamo", None), "is_compiling", lambda: False)
    return bool(check())


class NoiseInjection(nn.Module):
    """GPEN's ``isconcat`` noise injection: appends ``weight * noise`` (the encoder features) as channels."""

    def __init__(self, isconcat: bool = True) -> None:
        super().__init__()
        self.isconcat = isconcat
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if noise is None:
            raise ValueError("GPEN needs the encoder features as noise; random noise is not supported")
        noise = noise * self.weight.to(noise.dtype)
        return torch.cat([image, noise], dim=1) if self.isconcat else image + noise


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = BLUR_KERNEL,
        demodulate: bool = True,
        isconcat: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel,
            out_channel,
            kernel_size,
            style_dim,
            upsample=upsample,
            blur_kernel=blur_kernel,
            demodulate=demodulate,
        )
        self.noise = NoiseInjection(isconcat)
        self.activate = FusedLeakyReLU(out_channel * 2 if isconcat else out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """Official StyledConv: ``sqrt2 · lrelu(cat[demod · conv(x·s), w · noise] + b)``."""
        return self.fused(x, style, noise, gain) * SQRT2

    def fused(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``forward / sqrt2`` in three passes: ``lrelu(cat[conv·d + b1, noise·w + b2])``; the caller owes ``sqrt2``.

        ``lrelu(a)·sqrt2 = lrelu(a·sqrt2)``, and the next layers fold ``sqrt2`` into their input gain, so the
        demodulation, noise weight, bias and both gains are one multiply-add per half.
        """
        if not self.noise.isconcat:
            raise NotImplementedError("GPEN always concatenates the encoder features (isconcat=True)")
        out, demod = self.conv.raw(x, style, gain)
        n, c = out.shape[:2]
        dtype = out.dtype
        bias = self.activate.bias.to(dtype)
        scale = demod.to(dtype)[:, :, None, None]
        noise_w = self.noise.weight.to(dtype)
        b_img, b_noise = bias[:c].view(1, c, 1, 1), bias[c:].view(1, -1, 1, 1)
        if _fast_eager():
            memory_format = (
                torch.channels_last if out.is_contiguous(memory_format=torch.channels_last) and c > 1 else None
            )
            buf = torch.empty(
                (n, 2 * c, *out.shape[2:]),
                dtype=dtype,
                device=out.device,
                memory_format=memory_format or torch.contiguous_format,
            )
            torch.addcmul(b_img, out, scale, out=buf[:, :c])
            torch.addcmul(b_noise, noise.to(dtype), noise_w, out=buf[:, c:])
            return F.leaky_relu_(buf, 0.2)
        cat = torch.cat([torch.addcmul(b_img, out, scale), torch.addcmul(b_noise, noise.to(dtype), noise_w)], dim=1)
        return F.leaky_relu(cat, 0.2)


class ToRGB(nn.Module):
    def __init__(
        self, in_channel: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[int] = BLUR_KERNEL
    ) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None, gain: float = 1.0
    ) -> torch.Tensor:
        out = self.conv(x, style, gain)
        out = out + self.bias.to(out.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    """The StyleGAN2 decoder of GPEN; the style is one vector broadcast to every layer (no mixing)."""

    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channel_multiplier: float = 2,
        blur_kernel: Sequence[int] = BLUR_KERNEL,
        lr_mlp: float = 0.01,
        isconcat: bool = True,
        narrow: float = 1.0,
    ) -> None:
        super().__init__()
        self.size = size
        self.style_dim = style_dim
        self.feat_multiplier = 2 if isconcat else 1
        layers: list[nn.Module] = [PixelNorm()]
        layers += [EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)]
        self.style = nn.Sequential(*layers)
        self.channels = channel_table(channel_multiplier, narrow)
        fm = self.feat_multiplier
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(
            self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel, isconcat=isconcat
        )
        self.to_rgb1 = ToRGB(self.channels[4] * fm, style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(
                StyledConv(
                    in_channel * fm,
                    out_channel,
                    3,
                    style_dim,
                    upsample=True,
                    blur_kernel=blur_kernel,
                    isconcat=isconcat,
                )
            )
            self.convs.append(
                StyledConv(out_channel * fm, out_channel, 3, style_dim, blur_kernel=blur_kernel, isconcat=isconcat)
            )
            self.to_rgbs.append(ToRGB(out_channel * fm, style_dim))
            in_channel = out_channel
        self.n_latent = self.log_size * 2 - 2

    def forward(self, z: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        """``z``: (N, style_dim) pre-mapping code; ``noise``: ``2·log2(size) − 3`` feature maps, coarse first."""
        style = self.style(z)
        out = self.input(style.shape[0]).to(noise[0].dtype)
        # each StyledConv returns its activation without the sqrt(2) gain; the consumers apply it (``gain``)
        out = self.conv1.fused(out, style, noise[0])
        skip = self.to_rgb1(out, style, gain=SQRT2)
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k].fused(out, style, noise[2 * k + 1], gain=SQRT2)
            out = self.convs[2 * k + 1].fused(out, style, noise[2 * k + 2], gain=SQRT2)
            skip = to_rgb(out, style, skip, gain=SQRT2)
        return skip


class ConvLayer(nn.Sequential):
    """Encoder conv: [blur] + equalized conv + fused leaky ReLU (``Sequential`` so keys are ``.0/.1/.2``)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[int] = BLUR_KERNEL,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(
                in_channel, out_channel, kernel_size, padding=padding, stride=stride, bias=bias and not activate
            )
        )
        if activate and bias:
            layers.append(FusedLeakyReLU(out_channel))
        super().__init__(*layers)
        self.fusable = activate and bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fusable:
            return super().forward(x)
        *blur, conv, act = list(self)
        for module in blur:
            x = module(x)
        # sqrt2 · lrelu(conv(x) + b) == lrelu(conv(x; sqrt2·W) + sqrt2·b): bias and gain inside the conv
        weight = (conv.weight * (conv.scale * SQRT2)).to(x.dtype)
        out = F.conv2d(x, weight, bias=(act.bias * SQRT2).to(x.dtype), stride=conv.stride, padding=conv.padding)
        return F.leaky_relu_(out, 0.2) if _fast_eager() else F.leaky_relu(out, 0.2)


class FullGenerator(nn.Module):
    """GPEN: encoder (``ecd0..ecdL``) + StyleGAN2 decoder; input and output (N, 3, size, size) RGB in [-1, 1].

    ``FullGenerator(2048, 512, 8, channel_multiplier=2, narrow=1)`` is GPEN-BFR-2048.
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: float = 2,
        blur_kernel: Sequence[int] = BLUR_KERNEL,
        lr_mlp: float = 0.01,
        isconcat: bool = True,
        narrow: float = 1.0,
    ) -> None:
        super().__init__()
        if size < 8 or size & (size - 1) or size > 4096:
            raise ValueError(f"GPEN size must be a power of two between 8 and 4096, got {size}")
        self.size = size
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.channel_multiplier = channel_multiplier
        self.narrow = narrow
        channels = channel_table(channel_multiplier, narrow)
        self.log_size = int(math.log2(size))
        self.generator = Generator(
            size, style_dim, n_mlp, channel_multiplier, blur_kernel, lr_mlp, isconcat=isconcat, narrow=narrow
        )
        self.names = [f"ecd{i}" for i in range(self.log_size - 1)]
        setattr(self, self.names[0], nn.Sequential(ConvLayer(3, channels[size], 1)))
        in_channel = channels[size]
        for i in range(self.log_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            stage = self.log_size - i + 1
            setattr(self, self.names[stage], nn.Sequential(ConvLayer(in_channel, out_channel, 3, downsample=True)))
            in_channel = out_channel
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 4 * 4, style_dim, activation="fused_lrelu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"GPEN-{self.size} needs {self.size}×{self.size} input, got {tuple(x.shape[-2:])}")
        features = []
        for name in self.names:
            x = getattr(self, name)(x)
            features.append(x)
        z = self.final_linear(x.reshape(x.shape[0], -1))
        # official order: each feature map twice, coarsest first, the first copy dropped
        noise = [f for f in reversed(features) for _ in range(2)][1:]
        return self.generator(z, noise)

    def to_precision(self, dtype: torch.dtype) -> FullGenerator:
        """Cast the convolutions to ``dtype``; keep the (cheap) linear layers in fp32 for accurate styles."""
        self.to(dtype)
        for module in self.modules():
            if isinstance(module, EqualLinear):
                module.float()
        return self
