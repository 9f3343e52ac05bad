"""The Swin trunk around the blocks: patch (un)embedding, the residual stages and groups, the
stochastic-depth schedule, and :class:`SwinTrunk`, the trunk of SwinIR and EQSR."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..._activation_checkpoint import maybe_checkpoint
from ..._checks import check_int, check_int_list
from ...ops.padding import pad_to_multiple
from .._common import RGB_MEAN
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
    "SwinTrunk",
    "drop_path_rates",
    "residual_conv",
    "shifted_window_blocks",
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


def shifted_window_blocks(
    dim: int,
    num_heads: int,
    window_size: int,
    depth: int,
    *,
    mlp_ratio: float,
    qkv_bias: bool,
    qk_scale: float | None,
    drop_path: Sequence[float],
) -> nn.ModuleList:
    """``depth`` :class:`SwinBlock` s whose shifts alternate 0, ``ws // 2``, 0, ..., block
    ``i`` with stochastic depth ``drop_path[i]``: the window-attention run of a
    :class:`SwinStage` and of EQSR's stage (after its AFE block)."""
    return nn.ModuleList(
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
        self.blocks = shifted_window_blocks(
            dim,
            num_heads,
            window_size,
            depth,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop_path=drop_path or [0.0] * depth,
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


class SwinTrunk(nn.Module):
    """The trunk SwinIR and EQSR share, with the official SwinIR attribute names: ``mean`` (a
    non-persistent buffer), ``conv_first``, ``patch_embed``, ``patch_unembed``, ``layers``
    (:class:`ResidualGroup` s around the subclass's token stages), ``norm``,
    ``conv_after_body``.

    .. code-block:: text

        lr -> pad to the window -> (x - mean) * img_range -> conv_first = shallow
           -> tokens -> LN -> [ group(tokens, x_size, *stage_args) ]_g -> LN -> image
           -> conv_after_body(.) + shallow                              (_deep_features)

    A subclass calls :meth:`_build_trunk` from its ``__init__`` (after ``nn.Module``'s), then
    adds its tail. Stage arguments (EQSR's scale condition) are passed to every group.
    """

    _checkpointing: str | None = None  # set_grad_checkpointing's mode

    def _build_trunk(
        self,
        *,
        in_chans: int,
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        window_size: int,
        img_range: float,
        patch_norm: bool,
        drop_path_rate: float,
        make_stage: Callable[[int, int, list[float]], nn.Module],
        resi_connection: str = "1conv",
    ) -> None:
        """Check the trunk's arguments and register its modules, in this order: ``mean``,
        ``conv_first``, ``patch_embed``, ``patch_unembed``, ``layers``, ``norm``,
        ``conv_after_body`` (a seeded model's initial weights follow the order).

        Args:
            make_stage: ``(depth, num_heads, drop_path_rates) -> module``: the token stage of
                one residual group (its ``residual_group``).
            resi_connection: of the groups and of ``conv_after_body`` (see
                :func:`residual_conv`).

        Raises:
            TypeError, ValueError: bad ``depths``, ``num_heads``, ``in_chans``, ``embed_dim``,
                ``window_size`` or ``img_range`` (named in the message).
        """
        depths = check_int_list(depths, "depths")
        num_heads = check_int_list(num_heads, "num_heads", length=len(depths))
        for name, value in (
            ("in_chans", in_chans),
            ("embed_dim", embed_dim),
            ("window_size", window_size),
        ):
            check_int(value, name)
        if not img_range > 0:
            raise ValueError(f"img_range must be > 0, got {img_range!r}")
        self.window_size = window_size
        self.img_range = float(img_range)
        mean = torch.tensor(RGB_MEAN) if in_chans == 3 else torch.zeros(in_chans)
        self.register_buffer("mean", mean.view(1, in_chans, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, padding=1)
        self.patch_embed = PatchEmbed(embed_dim, norm=patch_norm)
        self.patch_unembed = PatchUnEmbed()
        rates = drop_path_rates(drop_path_rate, depths)
        self.layers = nn.ModuleList(
            ResidualGroup(make_stage(depth, heads, rate), embed_dim, resi_connection)
            for depth, heads, rate in zip(depths, num_heads, rates, strict=True)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = residual_conv(embed_dim, resi_connection)

    def forward_features(self, x: torch.Tensor, *stage_args: Any) -> torch.Tensor:
        """The transformer body: ``(B, C, H, W) -> (B, C, H, W)``, ``H, W`` multiples of the
        window size; ``stage_args`` go to every residual group (under activation checkpointing
        when :meth:`set_grad_checkpointing` turned it on)."""
        x_size = (x.shape[2], x.shape[3])
        t = self.patch_embed(x)
        for layer in self.layers:
            t = maybe_checkpoint(layer, t, x_size, *stage_args, mode=self._checkpointing)
        return self.patch_unembed(self.norm(t), x_size)

    def set_grad_checkpointing(self, enable: bool = True, *, use_reentrant: bool = False) -> int:
        """Run each residual group under ``torch.utils.checkpoint`` while training; the stage
        arguments (EQSR's scale) are arguments of each group, so recomputation sees the same
        values. State-dict keys do not change. Returns the number of groups."""
        self._checkpointing = (
            None if not enable else ("reentrant" if use_reentrant else "non_reentrant")
        )
        return len(self.layers)

    def _deep_features(self, lr: torch.Tensor, *stage_args: Any) -> torch.Tensor:
        """``conv_after_body(body) + shallow`` of a checked ``lr`` ``(B, C_in, h, w)``, on the
        window-padded map (``(B, C, H, W)``, ``H, W`` the next multiples of the window size;
        the caller crops)."""
        x = (pad_to_multiple(lr, self.window_size) - self.mean.to(lr.dtype)) * self.img_range
        shallow = self.conv_first(x)
        return self.conv_after_body(self.forward_features(shallow, *stage_args)) + shallow
