"""Normalisation layers of scaleeq's blocks."""

from __future__ import annotations

import torch
from torch import nn

from ..functional import layer_norm2d

__all__ = ["LayerNorm2d"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of an NCHW map.

    Shape:
        - x: :math:`(B, C, H, W)`; output: same.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm2d(x, self.weight, self.bias, self.eps)
