"""Pieces shared by the backbones: the DIV2K mean, pixel-shuffle tails, argument checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._checks import check_channels, check_int, check_positive_float, check_tensor

__all__ = [
    "RGB_MEAN",
    "PixelShuffleUpsample",
    "ResidualCNN",
    "check_upscale",
    "preset_arguments",
]

#: Mean RGB of DIV2K in [0, 1], subtracted from the input by EDSR, RCAN, SwinIR, HAT and EQSR.
RGB_MEAN = (0.4488, 0.4371, 0.4040)


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


def preset_arguments(
    presets: Mapping[str, Mapping[str, Any]], name: object, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The constructor arguments of preset ``name`` with ``overrides`` applied: the one rule
    behind every model's ``from_preset``.

    Raises:
        ValueError: ``name`` is not a key of ``presets``.
    """
    if not isinstance(name, str) or name not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}, got {name!r}")
    return {**presets[name], **overrides}


class ResidualCNN(nn.Module):
    """The trunk EDSR and RCAN share (BasicSR attribute names):
    ``x = conv_first((x - mean) * img_range)``, ``x = conv_after_body(body(x)) + x``,
    ``out = conv_last(upsample(x)) / img_range + mean``; subclasses supply the body.

    Args:
        num_in_ch, num_out_ch, num_feat: ints >= 1; upscale: 2^n or 3; img_range: > 0;
            rgb_mean: three finite numbers (checked here; subclasses check their body's own).
        make_body: builds ``body`` (called after ``conv_first`` is made, so a seeded model's
            initial weights do not depend on this base class).

    Shape:
        - x: :math:`(B, C_{in}, h, w)` in [0, 1]; output :math:`(B, C_{out}, h s, w s)`.
    """

    def __init__(
        self,
        *,
        num_in_ch: int,
        num_out_ch: int,
        num_feat: int,
        upscale: int,
        img_range: float,
        rgb_mean: Sequence[float],
        make_body: Callable[[], nn.Module],
    ) -> None:
        check_upscale(upscale)
        for name, value in (
            ("num_in_ch", num_in_ch),
            ("num_out_ch", num_out_ch),
            ("num_feat", num_feat),
        ):
            check_int(value, name)
        check_positive_float(img_range, "img_range")
        if (
            not isinstance(rgb_mean, Sequence)
            or isinstance(rgb_mean, str)
            or len(rgb_mean) != 3
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in rgb_mean
            )
        ):
            raise ValueError(f"rgb_mean must be three finite numbers, got {rgb_mean!r}")
        super().__init__()
        self.img_range = img_range
        self.register_buffer("mean", torch.tensor(rgb_mean).view(1, 3, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, padding=1)
        self.body = make_body()
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.upsample = PixelShuffleUpsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", ndim=4, layout="(B, C, h, w)")
        check_channels(x, "x", self.conv_first.in_channels)
        mean = self.mean.to(x)
        x = self.conv_first((x - mean) * self.img_range)
        x = self.conv_after_body(self.body(x)) + x
        return self.conv_last(self.upsample(x)) / self.img_range + mean
