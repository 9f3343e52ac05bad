"""EDSR (Lim et al., 2017), a fixed-scale residual CNN, in the BasicSR attribute layout."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .._checks import check_int, check_positive_float
from .._config import store_config
from ._common import RGB_MEAN, ResidualCNN, preset_arguments

__all__ = ["EDSR", "ResidualBlock"]


class ResidualBlock(nn.Module):
    """``x + res_scale * conv2(relu(conv1(x)))``, no batch norm.

    Shape:
        - x: :math:`(B, C, H, W)`; output same.
    """

    def __init__(self, channels: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class EDSR(ResidualCNN):
    """EDSR with a pixel-shuffle tail, attribute names as in BasicSR.

    ``forward``: ``x = conv_first((x - mean) * img_range)``,
    ``x = conv_after_body(body(x)) + x``, ``out = conv_last(upsample(x)) / img_range + mean``.
    A fixed-scale network: ``scaleeq.retrofit(edsr)`` makes it arbitrary-scale.

    Args:
        num_in_ch, num_out_ch: image channels.
        num_feat: feature width.
        num_block: residual blocks.
        upscale: fixed factor of the tail (2^n or 3).
        res_scale: residual scaling (0.1 for the large model).
        img_range: pixel range the body sees (255 as in EDSR's training).
        rgb_mean: per-channel mean subtracted from the input (in [0, 1] units).

    Shape:
        - x: :math:`(B, 3, h, w)` in [0, 1]; output :math:`(B, 3, h s, w s)`.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "baseline": {"num_feat": 64, "num_block": 16, "res_scale": 1.0},
        "paper": {"num_feat": 256, "num_block": 32, "res_scale": 0.1},
        "light": {"num_feat": 32, "num_block": 8, "res_scale": 1.0},
        "tiny": {"num_feat": 16, "num_block": 2, "res_scale": 1.0},
    }
    presets = PRESETS  # the former name, still accepted

    @store_config
    def __init__(
        self,
        *,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 16,
        upscale: int = 4,
        res_scale: float = 1.0,
        img_range: float = 255.0,
        rgb_mean: tuple[float, float, float] = RGB_MEAN,
    ) -> None:
        check_int(num_block, "num_block")
        check_positive_float(res_scale, "res_scale")
        super().__init__(
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            num_feat=num_feat,
            upscale=upscale,
            img_range=img_range,
            rgb_mean=rgb_mean,
            make_body=lambda: nn.Sequential(
                *[ResidualBlock(num_feat, res_scale) for _ in range(num_block)]
            ),
        )

    @classmethod
    def from_preset(cls, name: str, *, upscale: int = 4, **overrides: Any) -> EDSR:
        """Build a named configuration: ``"baseline"`` (16 x 64), ``"paper"`` (32 x 256,
        res_scale 0.1), ``"light"`` (8 x 32) or ``"tiny"`` (2 x 16, for tests)."""
        return cls(**preset_arguments(cls.PRESETS, name, {"upscale": upscale, **overrides}))
