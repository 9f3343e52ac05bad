"""Operations on the upsampler's channels-last latent ``(B, H, W, D)``: 1x1 convolutions as
matrix products (to and from the NCHW layout the spatial operations use, without layout
copies), and NCHW convolutions that keep their output NCHW under channels-last weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (
    tracing,
)

__all__ = ["linear", "linear_to_nchw", "nchw_convs", "nchw_linear_add"]


def nchw_convs(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``seq(x)`` for contiguous NCHW ``x``, keeping the output contiguous NCHW even where the
    weights were converted to channels-last (``model.to(memory_format=torch.channels_last)``
    for the body): the aggregation reads the kernel in NCHW, and a channels-last kernel would
    be copied back, costing more than the convolution saves."""
    for layer in seq:
        if isinstance(layer, nn.Conv2d):
            w = layer.weight
            if w.stride() != _row_major_strides(w.shape):  # channels-last (a 1x1 one too)
                w = w.clone(memory_format=torch.contiguous_format)
            x = F.conv2d(
                x, w, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups
            )
        else:
            x = layer(x)
    return x


def _row_major_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def linear(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution applied to a channels-last ``(..., C)`` tensor."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def linear_to_nchw(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """1x1 convolution of channels-last ``(B, H, W, C)``, returned as contiguous NCHW."""
    b, h, w, c = x.shape
    weight = conv.weight.flatten(1)  # (O, C)
    rows = x.reshape(b, h * w, c)
    if tracing():  # a symbolic batch (export): one batched product
        out = torch.matmul(weight, rows.transpose(1, 2))
        out = out if conv.bias is None else out + conv.bias[:, None]
        return out.reshape(b, -1, h, w)
    # per sample: a 2-D product takes the transposed operand without a copy
    if conv.bias is None:
        outs = [weight @ rows[i].t() for i in range(b)]
    else:
        outs = [torch.addmm(conv.bias[:, None], weight, rows[i].t()) for i in range(b)]
    out = outs[0][None] if b == 1 else torch.stack(outs)
    return out.view(b, -1, h, w)


def nchw_linear_add(x: torch.Tensor, conv: nn.Conv2d, residual: torch.Tensor) -> torch.Tensor:
    """``residual + conv(x)`` for NCHW ``x`` and channels-last ``residual`` ``(B, H, W, O)``."""
    b, c, h, w = x.shape
    out = torch.baddbmm(
        residual.reshape(b, h * w, -1),
        x.reshape(b, c, h * w).mT,
        conv.weight.flatten(1).t()[None].expand(b, c, -1),
    )
    if conv.bias is not None:
        out = out.add_(conv.bias)
    return out.view(residual.shape)
