"""RCAN (Zhang et al., 2018): residual groups of channel-attention blocks, BasicSR layout."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .._checks import check_int, check_positive_float
from .._config import store_config
from ._common import RGB_MEAN, ResidualCNN, preset_arguments

__all__ = ["RCAB", "RCAN", "ChannelAttention", "ResidualGroup"]


class ChannelAttention(nn.Module):
    """``x * sigmoid(conv(relu(conv(mean_hw(x)))))`` with a ``C / reduction`` bottleneck."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        mid = max(1, channels // reduction)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, mid, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class RCAB(nn.Module):
    """Residual channel-attention block: ``x + res_scale * CA(conv(relu(conv(x))))``."""

    def __init__(self, channels: int, reduction: int = 16, res_scale: float = 1.0) -> None:
        super().__init__()
        self.rcab = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            ChannelAttention(channels, reduction),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.rcab(x) * self.res_scale


class ResidualGroup(nn.Module):
    """``x + conv(RCAB^n(x))``."""

    def __init__(
        self, channels: int, num_block: int, reduction: int = 16, res_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.residual_group = nn.Sequential(
            *[RCAB(channels, reduction, res_scale) for _ in range(num_block)]
        )
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.residual_group(x))


class RCAN(ResidualCNN):
    """RCAN with a pixel-shuffle tail, attribute names as in BasicSR.

    ``forward`` as EDSR's: ``x = conv_first((x - mean) * img_range)``,
    ``x = conv_after_body(body(x)) + x``, ``out = conv_last(upsample(x)) / img_range + mean``,
    with ``body`` a sequence of :class:`ResidualGroup`.

    Shape:
        - x: :math:`(B, 3, h, w)` in [0, 1]; output :math:`(B, 3, h s, w s)`.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"num_feat": 64, "num_group": 10, "num_block": 20, "reduction": 16},
        "light": {"num_feat": 32, "num_group": 4, "num_block": 4, "reduction": 8},
        "tiny": {"num_feat": 16, "num_group": 2, "num_block": 2, "reduction": 4},
    }
    presets = PRESETS  # the former name, still accepted

    @store_config
    def __init__(
        self,
        *,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_group: int = 10,
        num_block: int = 20,
        reduction: int = 16,
        upscale: int = 4,
        res_scale: float = 1.0,
        img_range: float = 255.0,
        rgb_mean: tuple[float, float, float] = RGB_MEAN,
    ) -> None:
        check_int(num_group, "num_group")
        check_int(num_block, "num_block")
        check_int(reduction, "reduction")
        check_positive_float(res_scale, "res_scale")
        super().__init__(
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            num_feat=num_feat,
            upscale=upscale,
            img_range=img_range,
            rgb_mean=rgb_mean,
            make_body=lambda: nn.Sequential(
                *[
                    ResidualGroup(num_feat, num_block, reduction, res_scale)
                    for _ in range(num_group)
                ]
            ),
        )

    @classmethod
    def from_preset(cls, name: str, *, upscale: int = 4, **overrides: Any) -> RCAN:
        """Build ``"paper"`` (10 groups x 20 blocks x 64), ``"light"`` or ``"tiny"``."""
        return cls(**preset_arguments(cls.PRESETS, name, {"upscale": upscale, **overrides}))
