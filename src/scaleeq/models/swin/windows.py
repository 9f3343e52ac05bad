"""Window geometry of Swin attention: tokens and images, window partitions, relative
position indices and the shifted-window mask (computed for the runtime size)."""

from __future__ import annotations

import torch

from ..._checks import tracing

__all__ = [
    "MASK_VALUE",
    "check_x_size",
    "merge_heads",
    "overlap_relative_position_index",
    "relative_position_index",
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
    if tracing():  # symbolic sizes (export): the padding made them multiples
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


def merge_heads(out: torch.Tensor) -> torch.Tensor:
    """Attention output ``(B, nH, N, d)`` -> ``(B, N, nH * d)``.

    While tracing, the transposed output is copied first: an exporter that decomposes
    ``scaled_dot_product_attention`` gets other strides than the trace saw, and a reshape traced
    as a view of them fails.
    """
    b, nh, n, d = out.shape
    out = out.transpose(1, 2)
    if tracing():
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
