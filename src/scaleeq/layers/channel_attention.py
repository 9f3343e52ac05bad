"""The channel attention of a :class:`~scaleeq.layers.kriging_block.KrigingBlock`'s FFN: small
strategy modules, one per ``channel_attention=`` spelling, each declaring what it needs and
whether a window of the render equals the crop of the whole render.

- ``"lr"``: :class:`LRContextAttention` (the default), a gate from the LR feature map's mean;
- ``"none"``: :class:`NoAttention`;
- ``"eca"``: :class:`scaleeq.layers.official.OfficialECA`, the official code's form (with the
  other official-checkpoint quirks).

:data:`scaleeq.layers.kriging_block.CHANNEL_ATTENTIONS` maps the spellings to the classes.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .latent import linear

__all__ = ["BlockAttention", "LRContextAttention", "NoAttention"]


class BlockAttention(nn.Module):
    """Base of the channel-attention variants of a kriging block's FFN.

    A variant is built as ``cls(dim, context_dim)`` and adds the FFN's gated output to the
    latent (:meth:`add_ffn`); its parameters (if any) are its own, so its state-dict keys are
    ``attn.*`` of the block.

    Class attributes (each variant declares its own):
        name: the ``channel_attention=`` spelling that selects it.
        window_exact: a window's render equals the same crop of the whole render (the gate
            does not read the HR map beyond the window's halo).
        needs_context: it reads the LR context vector ``(B, context_dim)`` (the mean of the
            upsampler's input feature map).
    """

    name: ClassVar[str]
    window_exact: ClassVar[bool]
    needs_context: ClassVar[bool]

    def add_ffn(
        self,
        z: torch.Tensor,
        hidden: torch.Tensor,
        last: nn.Conv2d,
        context: torch.Tensor | None,
    ) -> torch.Tensor:
        """``z + gate * last(hidden)``, channels-last: ``z`` ``(B, H, W, D)``, ``hidden``
        ``(B, H, W, D_ffn)``, ``last`` the FFN's last 1x1 convolution, ``context``
        ``(B, context_dim)`` or ``None``."""
        raise NotImplementedError


class NoAttention(BlockAttention):
    """``channel_attention="none"``: the FFN's output is added ungated. No parameters."""

    name = "none"
    window_exact = True
    needs_context = False

    def __init__(self, dim: int = 0, context_dim: int = 0) -> None:
        super().__init__()

    def add_ffn(
        self,
        z: torch.Tensor,
        hidden: torch.Tensor,
        last: nn.Conv2d,
        context: torch.Tensor | None,
    ) -> torch.Tensor:
        return z + linear(hidden, last)


class LRContextAttention(BlockAttention, nn.Linear):
    """``channel_attention="lr"`` (the default): the FFN's output is gated per channel by
    ``sigmoid(Linear(context))``, the context being the LR feature map's global mean, which
    every window shares (window-exact). The linear layer (``weight`` ``(dim, context_dim)``,
    ``bias``) starts at zero, a gate of 1/2.

    The gate is folded into the FFN's last layer (per-sample weights) together with the
    residual add: one batched product.
    """

    name = "lr"
    window_exact = True
    needs_context = True

    def __init__(self, dim: int, context_dim: int = 0) -> None:
        super().__init__(context_dim, dim)  # nn.Linear: the same parameters and draws as before
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def add_ffn(
        self,
        z: torch.Tensor,
        hidden: torch.Tensor,
        last: nn.Conv2d,
        context: torch.Tensor | None,
    ) -> torch.Tensor:
        assert context is not None
        b, h, w, d = z.shape
        gate = torch.sigmoid(self(context))  # (B, D)
        weight = last.weight.flatten(1)[None] * gate[:, :, None]  # (B, D, D_ffn)
        out = torch.baddbmm(z.view(b, h * w, d), hidden.view(b, h * w, -1), weight.mT)
        return out.add_((last.bias * gate)[:, None, :]).view(b, h, w, d)
