"""The Neural Kriging upsampler's parts: the offset encoding of its head and its involution
block (pre-norm: the data kernel times the RBF distance kernel aggregates each query's
neighbourhood; then a gated FFN), on the channels-last latent (:mod:`scaleeq.layers.latent`)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (
    check_int,
    float_dtype_for,
)
from ..ops.aggregate import aggregate
from .channel_attention import BlockAttention, LRContextAttention, NoAttention
from .latent import linear, linear_to_nchw, nchw_convs, nchw_linear_add
from .norm import LayerNorm2d
from .official import OfficialECA

__all__ = [
    "CHANNEL_ATTENTIONS",
    "ChannelAttention",
    "KrigingBlock",
    "OffsetEncoding",
    "block_attention",
]

#: The ``channel_attention=`` spellings.
ChannelAttention = Literal["lr", "eca", "none"]

#: The ``channel_attention=`` spellings and their variants (the one table).
CHANNEL_ATTENTIONS: dict[str, type[BlockAttention]] = {
    "lr": LRContextAttention,
    "eca": OfficialECA,
    "none": NoAttention,
}


def block_attention(
    channel_attention: ChannelAttention, name: str = "channel_attention"
) -> type[BlockAttention]:
    """The :class:`~scaleeq.layers.channel_attention.BlockAttention` class that the name
    ``channel_attention`` selects (:data:`CHANNEL_ATTENTIONS`).

    Raises:
        ValueError: not one of the names (the argument ``name`` is named in the message).
    """
    variant = (
        CHANNEL_ATTENTIONS.get(channel_attention) if isinstance(channel_attention, str) else None
    )
    if variant is None:
        names = ", ".join(repr(k) for k in CHANNEL_ATTENTIONS)
        raise ValueError(f"{name} must be one of {names}, got {channel_attention!r}")
    return variant


class OffsetEncoding(nn.Module):
    """Frequency encoding of 1-D offsets: ``[u, sin(2^i pi u / 10), cos(2^i pi u / 10)]``.

    ``u = unit * offset`` (``unit=2`` gives the official half-LR-pixel units). Evaluated in
    float64 and cast.

    Shape:
        - offset: ``(B, n)``; output ``(B, n, 2 * num_freqs + 1)``.
    """

    def __init__(self, num_freqs: int, unit: float = 1.0) -> None:
        super().__init__()
        check_int(num_freqs, "num_freqs", minimum=0)
        self.num_freqs = num_freqs
        self.unit = float(unit)
        self.out_features = 2 * num_freqs + 1

    def forward(self, offset: torch.Tensor, *, dtype: torch.dtype) -> torch.Tensor:
        fdt = float_dtype_for(offset.device)
        u = offset.to(fdt) * self.unit
        freqs = (2.0 ** torch.arange(self.num_freqs, device=u.device, dtype=fdt)) * (math.pi / 10)
        ang = u[..., None] * freqs
        return torch.cat([u[..., None], torch.sin(ang), torch.cos(ang)], dim=-1).to(dtype)


class KrigingBlock(nn.Module):
    """One involution block of the upsampler (pre-norm, residual).

    Args:
        dim: latent width ``D``.
        kernel_size: aggregation neighbourhood ``k`` (odd).
        group_channels: channels per kernel group (``G = D / group_channels``).
        kernel_hidden: width of the data-kernel generator (3x3 conv).
        ffn_ratio: FFN expansion.
        channel_attention: ``"lr"`` (gate from the LR feature map's global mean: window-exact),
            ``"eca"`` (official: ECA on the spatial mean of the HR map, no sigmoid; full renders
            only) or ``"none"``; or a :class:`~scaleeq.layers.channel_attention.BlockAttention`
            class. Built as ``attn`` (see :data:`CHANNEL_ATTENTIONS`).
        context_dim: channels of the LR context vector (for ``"lr"``).
        backend: aggregation backend.

    Shape:
        - z: ``(B, D, H, W)``; dist: ``(B, k*k, H, W)``; mask: ``(B, 1, H, W)`` or None;
          context: ``(B, context_dim)``; output ``(B, D, H, W)``.
    """

    def __init__(
        self,
        dim: int,
        *,
        kernel_size: int = 3,
        group_channels: int = 8,
        kernel_hidden: int | None = None,
        ffn_ratio: int = 2,
        channel_attention: ChannelAttention | type[BlockAttention] = "lr",
        context_dim: int = 0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        check_int(group_channels, "group_channels")
        attention = (
            channel_attention
            if isinstance(channel_attention, type) and issubclass(channel_attention, BlockAttention)
            else block_attention(channel_attention)
        )
        if dim % group_channels != 0:
            raise ValueError(f"hidden={dim} must be divisible by group_channels={group_channels}")
        self.groups = dim // group_channels
        self.kernel_size = kernel_size
        self.backend = backend
        self.channel_attention = attention.name
        kernel_hidden = kernel_hidden or max(1, dim // 4)
        self.norm1 = LayerNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.kernel_gen = nn.Sequential(
            nn.Conv2d(dim, kernel_hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(kernel_hidden, self.groups * kernel_size**2, 1),
        )
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = nn.Sequential(
            nn.Conv2d(dim, ffn_ratio * dim, 1), nn.GELU(), nn.Conv2d(ffn_ratio * dim, dim, 1)
        )
        self.attn: BlockAttention = attention(dim, context_dim)

    def forward(
        self,
        z: torch.Tensor,
        dist: torch.Tensor,
        mask: torch.Tensor | None,
        context: torch.Tensor | None,
    ) -> torch.Tensor:
        """Channels-last, as the upsampler keeps its latent: ``z`` ``(B, H, W, D)`` in and out;
        ``dist`` ``(B, k*k, H, W)``, ``mask`` ``(B, 1, H, W)`` or ``None``, ``context``
        ``(B, C_ctx)`` for the ``"lr"`` gate or ``None``.

        The 1x1 convolutions run as matrix products on the pixel-major latent; the two that
        feed or read the NCHW aggregation (``conv1``, ``conv2``) multiply by the transposed
        operand instead of copying the layout; the channel attention ``attn`` applies the FFN's
        last layer and the residual add (the ``"lr"`` gate folds into its weights, per sample).
        """
        b, h, w, d = z.shape
        y = linear_to_nchw(  # (B, D, H, W) contiguous, for the spatial ops
            F.layer_norm(z, (d,), self.norm1.weight, self.norm1.bias, self.norm1.eps), self.conv1
        )
        if mask is not None:  # zero outside the image, as the full render's zero padding
            y = y * mask
        kernel = nchw_convs(self.kernel_gen, y).view(b, self.groups, self.kernel_size**2, h, w)
        z = nchw_linear_add(aggregate(y, kernel, dist, backend=self.backend), self.conv2, z)
        hidden = linear(
            F.layer_norm(z, (d,), self.norm2.weight, self.norm2.bias, self.norm2.eps), self.ffn[0]
        )
        hidden = F.gelu(hidden) if torch.is_grad_enabled() else torch.ops.aten.gelu_(hidden)
        return self.attn.add_ffn(z, hidden, self.ffn[2], context)
