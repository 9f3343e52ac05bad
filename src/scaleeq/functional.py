"""The functional core: scaleeq's math as plain functions that trust their inputs.

Each module of :mod:`scaleeq` validates its arguments once at its public ``forward`` and then
calls these functions; a model validates its input once and its layers call them with the
operands they built. Nothing here checks shapes, devices or dtypes (an inconsistent call fails
inside PyTorch, or returns garbage): use the modules, or the checked op
:func:`scaleeq.ops.kriging_aggregate`, unless the operands are known to be consistent. The
pairing follows kornia's ``kornia.geometry.transform.vflip`` / ``Vflip``.

Functions and the modules that validate and call them:

- :func:`adaptive_conv2d` (with :func:`demodulation`, :func:`auto_impl`):
  :class:`~scaleeq.AdaptiveConv2d`;
- :func:`layer_norm2d`: :class:`~scaleeq.layers.LayerNorm2d`;
- :func:`squeeze_excitation`: the SE gate of :class:`~scaleeq.AFEBlock`;
- :func:`aggregate` and :func:`distance_kernel`: :class:`~scaleeq.NeuralKrigingUpsampler` and
  its kriging blocks (checked form: :func:`scaleeq.ops.kriging_aggregate`);
- :func:`sample_image`: the image skip of :class:`~scaleeq.ArbitraryScaleSR`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ops.aggregate import aggregate, distance_kernel
from .sampling import sample_image

__all__ = [
    "adaptive_conv2d",
    "aggregate",
    "auto_impl",
    "demodulation",
    "distance_kernel",
    "layer_norm2d",
    "sample_image",
    "squeeze_excitation",
]


def auto_impl(device: torch.device, in_channels: int, out_channels: int) -> str:
    """The per-sample formulation ``impl="auto"`` takes; both are exact, only speed differs.

    From benchmarks/adaptive_conv.py (docs/benchmarks.md): on the CPU (oneDNN) the grouped
    per-sample-kernel convolution is faster up to about 128x128 channels and the input-scaling
    form beyond (1.68x vs 1.09x of nn.Conv2d at C=180). Elsewhere input scaling is used: it
    runs one ordinary convolution, which is what GPU libraries optimise best.
    """
    if device.type == "cpu" and in_channels * out_channels <= 128 * 128:
        return "grouped"
    return "input"


def demodulation(weight: torch.Tensor, style: torch.Tensor, eps: float) -> torch.Tensor:
    """StyleGAN2 demodulation factors ``(N, C_out)``: ``1 / sqrt(sum_{i,k} (W_{o,i,k} s_i)^2 +
    eps)`` for the kernel ``weight`` ``(C_out, C_in, kh, kw)`` and styles ``style``
    ``(N, C_in)``."""
    energy = weight.square().sum(dim=(2, 3))  # (O, I)
    return torch.rsqrt(style.square() @ energy.t() + eps)


def adaptive_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    style: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] | str = (0, 0),
    demodulate: bool = True,
    eps: float = 1e-8,
    impl: str = "auto",
) -> torch.Tensor:
    """The scale-modulated convolution of EQSR (Eq. 2) for styles already computed.

    The kernel of sample ``b`` is ``W * (1 + s_b)`` over input channels, demodulated per output
    channel if ``demodulate``; the bias is added after. One style for the whole batch folds the
    modulation into the weight (one plain convolution); per-sample styles take ``impl``:
    ``"input"`` (scale the input channels, one ordinary convolution, scale the outputs) or
    ``"grouped"`` (per-sample kernels, one grouped convolution); ``"auto"`` picks per
    :func:`auto_impl`. Without demodulation input scaling is always taken (exact identity at
    a zero style).

    Args:
        x: ``(B, C_in, H, W)``.
        weight: ``(C_out, C_in, kh, kw)``.
        style: the modulation ``1 + s``, ``(1, C_in)`` or ``(B, C_in)``, in ``x``'s dtype.
        bias: ``(C_out,)`` or ``None``.
        stride, padding: as ``F.conv2d``.
        demodulate: apply the demodulation.
        eps: added inside the demodulation's rsqrt.
        impl: ``"auto"``, ``"input"`` or ``"grouped"``.

    Returns:
        ``(B, C_out, H', W')``.
    """
    if style.shape[0] == 1:  # one scale for the whole batch: fold into the weight
        w = weight * style[0][None, :, None, None]
        if demodulate:
            w = w * demodulation(weight, style, eps)[0][:, None, None, None]
        return F.conv2d(x, w, bias, stride=stride, padding=padding)
    if not demodulate:  # one ordinary conv with the original weight: exact identity at init
        return F.conv2d(x * style[:, :, None, None], weight, bias, stride=stride, padding=padding)
    if impl == "auto":
        impl = auto_impl(x.device, weight.shape[1], weight.shape[0])
    if impl == "grouped":
        return _grouped(x, weight, style, bias, stride, padding, eps)
    y = F.conv2d(x * style[:, :, None, None], weight, None, stride=stride, padding=padding)
    demod = demodulation(weight, style, eps)[:, :, None, None]
    if bias is None:
        return y * demod
    return torch.addcmul(bias[None, :, None, None], y, demod)  # one pass: bias + y * d


def _grouped(
    x: torch.Tensor,
    weight: torch.Tensor,
    style: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int] | str,
    eps: float,
) -> torch.Tensor:
    """Per-sample demodulated kernels, one grouped convolution over the batch."""
    b = x.shape[0]
    out_c, in_c = weight.shape[:2]
    w = weight[None] * style[:, None, :, None, None]  # (B, O, I, kh, kw)
    w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
    y = F.conv2d(
        x.reshape(1, b * in_c, *x.shape[2:]),
        w.reshape(b * out_c, in_c, *weight.shape[2:]),
        None,
        stride=stride,
        padding=padding,
        groups=b,
    )
    y = y.reshape(b, out_c, *y.shape[2:])
    if bias is not None:
        y = y + bias[None, :, None, None]
    return y


def layer_norm2d(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """LayerNorm over the channels of each pixel of ``x`` ``(B, C, H, W)``; same shape."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, bias, eps)
    return y.permute(0, 3, 1, 2)


def squeeze_excitation(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Channel gating ``x * sigmoid(W2 silu(W1 mean_hw(x)))`` of ``x`` ``(B, C, H, W)`` with the
    bias-free weights ``w1`` ``(R, C)`` and ``w2`` ``(C, R)``; same shape."""
    gate = torch.sigmoid(F.linear(F.silu(F.linear(x.mean(dim=(2, 3)), w1)), w2))
    return x * gate[:, :, None, None]
