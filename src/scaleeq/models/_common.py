"""Pieces shared by the convolutional backbones: pixel-shuffle tails and config records."""

from __future__ import annotations

import math

from torch import nn

from .._checks import check_int

__all__ = ["PixelShuffleUpsample", "check_upscale"]


def check_upscale(upscale: object) -> int:
    """Validate a fixed integer upscale factor supported by pixel-shuffle tails (2^n or 3)."""
    check_int(upscale, "upscale")
    if upscale != 3 and upscale & (upscale - 1) != 0:
        raise ValueError(
            f"upscale must be a power of 2 or 3 for a pixel-shuffle tail, got {upscale}"
        )
    return upscale


class PixelShuffleUpsample(nn.Sequential):
    """Fixed-scale pixel-shuffle stages: ``log2(scale)`` x (conv 3x3 to 4C, shuffle 2), or one
    (conv 3x3 to 9C, shuffle 3) for scale 3; identity for scale 1.

    Shape:
        - x: :math:`(B, C, h, w)`; output :math:`(B, C, h s, w s)`.
    """

    def __init__(self, scale: int, channels: int) -> None:
        check_upscale(scale)
        stages: list[nn.Module] = []
        if scale == 3:
            stages += [nn.Conv2d(channels, 9 * channels, 3, padding=1), nn.PixelShuffle(3)]
        else:
            for _ in range(int(math.log2(scale))):
                stages += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2)]
        super().__init__(*stages)
