"""Swin / HAT building blocks shared by :class:`~scaleeq.models.SwinIR` and
:class:`~scaleeq.models.EQSR`, written from the papers' descriptions.

Vocabulary (shapes in docstrings):

- ``B`` batch, ``C`` channels, ``(H, W)`` the feature map size (a multiple of the window);
- tokens ``(B, L, C)`` with ``L = H * W`` in row-major pixel order;
- ``ws`` the window side, ``N = ws * ws`` tokens per window, ``nW = (H / ws) * (W / ws)``
  windows per image, in row-major window order;
- ``nH`` attention heads of ``d = C / nH`` channels each (contiguous channel chunks).

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` with the
relative position bias (and the shifted-window mask) as an additive float mask, so fused CPU and
GPU kernels are used where the platform has them. Masks and relative position indices are
computed for the runtime size; they are never stored in the state dict (checkpoints of the
original implementations, which store them, still load: see :class:`WindowAttention`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, is_compiling

__all__ = [
    "DropPath",
    "Mlp",
    "OverlapCrossAttentionBlock",
    "PatchEmbed",
    "PatchUnEmbed",
    "ResidualGroup",
    "SwinBlock",
    "SwinStage",
    "WindowAttention",
    "check_x_size",
    "crop_padding",
    "drop_path_rates",
    "merge_heads",
    "overlap_relative_position_index",
    "pad_to_multiple",
    "relative_position_index",
    "residual_conv",
    "shifted_window_mask",
    "to_image",
    "to_tokens",
    "window_partition",
    "window_reverse",
]

MASK_VALUE = -100.0  # logit added between tokens of different regions in a shifted window


# ----------------------------------------------------------------------------------------------
# layout helpers


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H * W, C)`` tokens in row-major pixel order."""
    return x.flatten(2).transpose(1, 2)


def to_image(x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
    """``(B, H * W, C)`` tokens -> ``(B, C, H, W)``."""
    h, w = x_size
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


def check_x_size(x: torch.Tensor, x_size: tuple[int, int], window_size: int) -> tuple[int, int]:
    """Validate tokens ``(B, L, C)`` against ``x_size = (H, W)``, both multiples of the window.

    Raises:
        ValueError: ``L != H * W`` or a side is not a multiple of ``window_size``.
    """
    if is_compiling():  # symbolic sizes (export): the padding made them multiples
        return x_size
    h, w = (int(v) for v in x_size)
    if x.ndim != 3 or x.shape[1] != h * w:
        raise ValueError(
            f"x must be tokens (B, L, C) with L = H * W = {h * w} for x_size={(h, w)}, "
            f"got shape {tuple(x.shape)}"
        )
    if h % window_size or w % window_size:
        raise ValueError(
            f"x_size must be a multiple of the window size {window_size} on both sides, "
            f"got {(h, w)}; pad the input (pad_to_multiple)"
        )
    return h, w


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` at the bottom/right so that ``H`` and ``W`` are multiples.

    Reflect padding, as SwinIR and HAT pad at test time; an axis too short to reflect (the pad
    would reach past its far end) is padded by replicating its last pixel instead.

    Returns:
        ``(B, C, H', W')`` with ``H' = ceil(H / multiple) * multiple`` (same for ``W``).
    """
    h, w = x.shape[-2:]
    if not is_compiling() and h % multiple == 0 and w % multiple == 0:
        return x  # (symbolic sizes take the gather below: no branch on them)
    rows, cols = _pad_index(h, multiple, x.device), _pad_index(w, multiple, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def crop_padding(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: the top-left ``size = (H, W)`` of ``(B, C, H', W')``.

    While tracing with symbolic sizes (export) the crop is an index gather, which needs no
    proof that ``H <= H'`` (a slice does, and a compiler cannot always give one).
    """
    h, w = size
    if is_compiling():
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        return x.index_select(-2, rows).index_select(-1, cols)
    return x[:, :, :h, :w]


def _pad_index(n: int, multiple: int, device: torch.device) -> torch.Tensor:
    """Source index of each position of ``n`` padded up to a multiple: reflect when the pad is
    shorter than ``n``, else replicate the last one (:func:`pad_to_multiple`'s rule, as tensor
    arithmetic, so that symbolic sizes need no branch). The padded length is written
    ``multiple * ceil(n / multiple)`` so that a compiler sees it as a multiple."""
    i = torch.arange(multiple * ((n + multiple - 1) // multiple), device=device)
    reflected = torch.where(i < n, i, 2 * (n - 1) - i)
    return torch.where(reflected.min() >= 0, reflected, i.clamp(max=n - 1))


def merge_heads(out: torch.Tensor) -> torch.Tensor:
    """Attention output ``(B, nH, N, d)`` -> ``(B, N, nH * d)``.

    While tracing, the transposed output is copied first: an exporter that decomposes
    ``scaled_dot_product_attention`` gets other strides than the trace saw, and a reshape traced
    as a view of them fails.
    """
    b, nh, n, d = out.shape
    out = out.transpose(1, 2)
    if is_compiling():
        out = out.clone(memory_format=torch.contiguous_format)
    return out.reshape(b, n, nh * d)


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Split ``(B, H, W, C)`` into windows ``(B * nW, ws * ws, C)`` (batch-major, row-major)."""
    b, h, w, c = x.shape
    ws = window_size
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, ws * ws, C)`` -> ``(B, H, W, C)``."""
    ws = window_size
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


# ----------------------------------------------------------------------------------------------
# relative positions and masks


def _grid(side: int, device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    ar = torch.arange(side, device=device)
    return ar.repeat_interleave(side), ar.repeat(side)  # (y, x) of each row-major position


def relative_position_index(window_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Swin's index into a ``(2 ws - 1)^2``-row bias table, shape ``(N, N)`` int64.

    ``index[i, j] = (y_i - y_j + ws - 1) * (2 ws - 1) + (x_i - x_j + ws - 1)`` for query
    ``i`` and key ``j`` of one window.
    """
    ys, xs = _grid(window_size, device)
    span = 2 * window_size - 1
    dy = ys[:, None] - ys[None, :] + window_size - 1
    dx = xs[:, None] - xs[None, :] + window_size - 1
    return dy * span + dx


def overlap_relative_position_index(
    window_size: int, overlap_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """HAT's index into the ``(ws + ows - 1)^2``-row bias table of overlapping cross-attention.

    For query ``q`` of a ``ws x ws`` window and key ``k`` of its ``ows x ows`` patch:
    ``((y_k - y_q + ws - ows + 1) * (ws + ows - 1) + (x_k - x_q + ws - ows + 1))`` taken
    modulo the table size. The offset ``ws - ows + 1`` is the one HAT uses; it makes some raw
    values negative, which PyTorch indexing wraps around, so the modulo reproduces HAT's
    lookup exactly (it is still a bijection over the relative offsets).

    Returns:
        ``(ws * ws, ows * ows)`` int64.
    """
    qy, qx = _grid(window_size, device)
    ky, kx = _grid(overlap_size, device)
    span = window_size + overlap_size - 1
    shift = window_size - overlap_size + 1
    dy = ky[None, :] - qy[:, None] + shift
    dx = kx[None, :] - qx[:, None] + shift
    return (dy * span + dx) % (span * span)


def shifted_window_mask(
    h: int,
    w: int,
    window_size: int,
    shift: int,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Additive attention mask of shifted-window attention for an ``(H, W)`` map.

    After the cyclic roll by ``-shift``, the bottom/right windows mix pixels from opposite
    image borders. Each axis is cut into ``[0, H - ws)``, ``[H - ws, H - shift)`` and
    ``[H - shift, H)``; tokens of one window attend only to tokens of the same region pair.

    Returns:
        ``(nW, N, N)``: 0 within a region, ``-100`` across regions.
    """
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    ry = (ys >= h - window_size).long() + (ys >= h - shift).long()
    rx = (xs >= w - window_size).long() + (xs >= w - shift).long()
    region = (ry[:, None] * 3 + rx[None, :])[None, :, :, None]  # (1, H, W, 1)
    region = window_partition(region, window_size)[..., 0]  # (nW, N)
    different = region[:, :, None] != region[:, None, :]
    return different.to(dtype) * MASK_VALUE


# ----------------------------------------------------------------------------------------------
# modules


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
