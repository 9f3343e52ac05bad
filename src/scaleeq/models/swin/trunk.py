"""The Swin trunk around the blocks: patch (un)embedding, the residual stages and groups, and
the stochastic-depth schedule."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .blocks import SwinBlock
from .windows import (
    to_image,
    to_tokens,
)

__all__ = [
    "PatchEmbed",
    "PatchUnEmbed",
    "ResidualGroup",
    "SwinStage",
    "drop_path_rates",
    "residual_conv",
]


class PatchEmbed(nn.Module):
    """Feature map to tokens (patch size 1), optionally followed by LayerNorm (``.norm``).

    Shape:
        - x: ``(B, C, H, W)``; output ``(B, H * W, C)``.
    """

    def __init__(self, dim: int, *, norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_tokens(x)
        return x if self.norm is None else self.norm(x)


class PatchUnEmbed(nn.Module):
    """Tokens back to a feature map (patch size 1).

    Shape:
        - x: ``(B, H * W, C)``, ``x_size = (H, W)``; output ``(B, C, H, W)``.
    """

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        return to_image(x, x_size)


def residual_conv(dim: int, resi_connection: str) -> nn.Module:
    """The convolution closing a residual group (and following the body).

    ``"1conv"``: one 3x3 conv. ``"3conv"``: 3x3 to ``C/4``, 1x1, 3x3 back to ``C`` with
    LeakyReLU(0.2) between (SwinIR's lighter variant for large models).

    Shape:
        ``(B, C, H, W)`` -> ``(B, C, H, W)``.
    """
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, padding=1)
    if resi_connection == "3conv":
        q = dim // 4
        return nn.Sequential(
            nn.Conv2d(dim, q, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(q, q, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(q, dim, 3, padding=1),
        )
    raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")


class SwinStage(nn.Module):
    """A stack of :class:`SwinBlock` with alternating shifts (0, ``ws // 2``, 0, ...).

    Each block in ``.blocks`` is called as ``blk(x, x_size)``, so any module with that
    signature (for instance :class:`~scaleeq.AFETokenBlock`) may be inserted.

    Shape:
        - x: ``(B, H * W, C)``, ``x_size = (H, W)``; output: same as x.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        *,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_path: list[float] | None = None,
    ) -> None:
        super().__init__()
        drop_path = drop_path or [0.0] * depth
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim,
                num_heads,
                window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop_path=drop_path[i],
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, x_size)
        return x


class ResidualGroup(nn.Module):
    """A residual group: ``x + tokens(conv(image(residual_group(x, x_size, ...))))``.

    SwinIR's RSTB (with a :class:`SwinStage`) and HAT's RHAG share this form; extra
    positional arguments (EQSR's scale) are passed on to ``residual_group``.

    Args:
        residual_group: the token stage, called as ``residual_group(x, x_size, *args)``.
        dim: channels ``C``.
        resi_connection: see :func:`residual_conv`.

    Shape:
        - x: ``(B, H * W, C)``, ``x_size = (H, W)``; output: same as x.
    """

    def __init__(self, residual_group: nn.Module, dim: int, resi_connection: str = "1conv") -> None:
        super().__init__()
        self.residual_group = residual_group
        self.conv = residual_conv(dim, resi_connection)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int], *args: Any) -> torch.Tensor:
        y = self.residual_group(x, x_size, *args)
        return to_tokens(self.conv(to_image(y, x_size))) + x


def drop_path_rates(rate: float, depths: list[int]) -> list[list[float]]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over all blocks, per group."""
    flat = torch.linspace(0, rate, sum(depths)).tolist() if sum(depths) else []
    out, start = [], 0
    for d in depths:
        out.append(flat[start : start + d])
        start += d
    return out
