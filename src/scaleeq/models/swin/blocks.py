"""Swin / HAT attention blocks: window attention with relative position bias, the (shifted)
Swin block, HAT's overlapping cross-attention block, and their MLP and drop-path."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._checks import check_int
from .windows import (
    check_x_size,
    merge_heads,
    overlap_relative_position_index,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

__all__ = [
    "DropPath",
    "Mlp",
    "OverlapCrossAttentionBlock",
    "SwinBlock",
    "WindowAttention",
]


def _init_linear(m: nn.Linear) -> None:
    nn.init.trunc_normal_(m.weight, std=0.02)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch per sample with probability ``p`` (training).

    Shape:
        - x: ``(B, ...)``; output: same.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """Token MLP ``fc2(GELU(fc1(x)))``.

    Shape:
        - x: ``(..., C)``; output: same.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        _init_linear(self.fc1)
        _init_linear(self.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _check_heads(dim: int, num_heads: int) -> None:
    check_int(num_heads, "num_heads")
    if dim % num_heads:
        raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")


def _ignore_derived_keys(prefix: str, state_dict: dict[str, Any], names: tuple[str, ...]) -> None:
    """Drop buffers that other implementations store but we derive (load compatibility)."""
    for name in names:
        state_dict.pop(prefix + name, None)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    ``softmax(q k^T * scale + bias + mask) v`` per window and head, then a linear projection.
    The bias table has ``(2 ws - 1)^2`` rows (one per relative offset) and one column per head.

    Checkpoints of the original Swin/SwinIR/HAT code store the derived
    ``relative_position_index`` buffer; it is accepted and ignored on load.

    Args:
        dim: channels ``C``.
        window_size: window side ``ws``.
        num_heads: heads ``nH`` (must divide ``C``).
        qkv_bias: bias in the ``qkv`` projection.
        qk_scale: logit scale (default ``d^-0.5``).

    Shape:
        - x: ``(B * nW, N, C)``
        - mask: ``(nW, N, N)`` additive, or None
        - output: ``(B * nW, N, C)``
    """

    def __init__(
        self,
        dim: int,
        window_size: int,
        num_heads: int,
        *,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
    ) -> None:
        super().__init__()
        _check_heads(dim, num_heads)
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        _init_linear(self.qkv)
        _init_linear(self.proj)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        _ignore_derived_keys(prefix, state_dict, ("relative_position_index",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def relative_position_bias(self) -> torch.Tensor:
        """The bias ``(nH, N, N)`` gathered from the table."""
        idx = relative_position_index(self.window_size, self.relative_position_bias_table.device)
        n = self.window_size**2
        return self.relative_position_bias_table[idx.view(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        d = c // self.num_heads
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias()[None]  # (1, nH, N, N)
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias + mask[:, None]).repeat(bw // nw, 1, 1, 1)  # (B * nW, nH, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        return self.proj(merge_heads(out))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"


class SwinBlock(nn.Module):
    """Swin transformer block: (shifted) window attention and an MLP, both pre-norm residual.

    ``x = x + WA(LN(x))`` on windows of the map rolled by ``(-shift, -shift)`` (with the
    shifted-window mask, computed for the runtime size), then ``x = x + MLP(LN(x))``.
    This is SwinIR's block and HAT's HAB without its convolution branch (as in EQSR).

    Args:
        dim: channels ``C``.
        num_heads: attention heads.
        window_size: window side ``ws``.
        shift_size: cyclic shift (0 or ``ws // 2`` in practice; ``0 <= shift < ws``).
        mlp_ratio: MLP hidden width over ``C``.
        qkv_bias, qk_scale: see :class:`WindowAttention`.
        drop_path: stochastic-depth probability of both branches.

    Shape:
        - x: ``(B, H * W, C)``, ``x_size = (H, W)`` multiples of ``ws``
        - output: ``(B, H * W, C)``
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        *,
        shift_size: int = 0,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(
                f"shift_size must be in [0, window_size={window_size}), got {shift_size!r}"
            )
        self.dim = dim
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim, window_size, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        _ignore_derived_keys(prefix, state_dict, ("attn_mask",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        h, w = check_x_size(x, x_size, self.window_size)
        b, _, c = x.shape
        s, ws = self.shift_size, self.window_size
        y = self.norm1(x).view(b, h, w, c)
        mask = None
        if s > 0:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
            mask = shifted_window_mask(h, w, ws, s, device=x.device, dtype=x.dtype)
        y = window_reverse(self.attn(window_partition(y, ws), mask), ws, h, w)
        if s > 0:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, shift_size={self.shift_size}"


class OverlapCrossAttentionBlock(nn.Module):
    """HAT's overlapping cross-attention block (OCAB).

    Queries come from non-overlapping ``ws x ws`` windows; keys and values from the enclosing
    ``ows x ows`` patches, ``ows = ws + int(ws * overlap_ratio)``, taken with stride ``ws`` from
    the key/value maps zero-padded by ``(ows - ws) / 2`` (padded keys/values are 0 and take part
    in the softmax unmasked, as in HAT). A relative position bias of ``(ws + ows - 1)^2`` rows is
    indexed by :func:`overlap_relative_position_index`. Then

    ``x = x + proj(OCA(LN(x)))`` and ``x = x + MLP(LN(x))``.

    Args:
        dim: channels ``C``.
        num_heads: heads.
        window_size: query window side ``ws``.
        overlap_ratio: key/value patch enlargement (0.5 in HAT: 8 -> 12).
        mlp_ratio: MLP hidden width over ``C``.
        qkv_bias, qk_scale: as in :class:`WindowAttention`.

    Shape:
        - x: ``(B, H * W, C)``, ``x_size = (H, W)`` multiples of ``ws``
        - output: ``(B, H * W, C)``
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        *,
        overlap_ratio: float = 0.5,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
    ) -> None:
        super().__init__()
        _check_heads(dim, num_heads)
        if not overlap_ratio >= 0:
            raise ValueError(f"overlap_ratio must be >= 0, got {overlap_ratio!r}")
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        # HAT's int(ws * ratio); the epsilon keeps ratios read back from shapes exact
        self.overlap_size = window_size + int(window_size * overlap_ratio + 1e-6)
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        span = window_size + self.overlap_size - 1
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(span * span, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        _init_linear(self.qkv)
        _init_linear(self.proj)

    def relative_position_bias(self) -> torch.Tensor:
        """The bias ``(nH, ws * ws, ows * ows)`` gathered from the table."""
        table = self.relative_position_bias_table
        idx = overlap_relative_position_index(self.window_size, self.overlap_size, table.device)
        return table[idx.view(-1)].view(*idx.shape, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        h, w = check_x_size(x, x_size, self.window_size)
        b, _, c = x.shape
        ws, ows, nh = self.window_size, self.overlap_size, self.num_heads
        d = c // nh
        qkv = self.qkv(self.norm1(x)).view(b, h, w, 3 * c)
        q = window_partition(qkv[..., :c], ws)  # (B * nW, N, C)
        bw, n = q.shape[:2]
        lo = (ows - ws) // 2
        hi = ows - ws - lo
        kv = F.pad(qkv[..., c:], (0, 0, lo, hi, lo, hi))  # (B, H + ows - ws, W + ows - ws, 2C)
        kv = kv.unfold(1, ows, ws).unfold(2, ows, ws)  # (B, H/ws, W/ws, 2C, ows, ows)
        kv = kv.permute(0, 1, 2, 4, 5, 3).reshape(bw, ows * ows, 2, nh, d)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B * nW, nH, M, d) each
        q = q.view(bw, n, nh, d).transpose(1, 2)
        bias = self.relative_position_bias()[None].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = window_reverse(merge_heads(out), ws, h, w)
        x = x + self.proj(out.reshape(b, h * w, c))
        return x + self.mlp(self.norm2(x))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, window_size={self.window_size}, overlap_size={self.overlap_size}, "
            f"num_heads={self.num_heads}"
        )
