"""Padding a feature map to a multiple of a window and cropping it back, as SwinIR-style
networks do at test time (reflect padding; traceable with symbolic sizes)."""

from __future__ import annotations

import torch

from .._checks import tracing
from .coords import ceil_div

__all__ = ["crop_padding", "pad_to_multiple"]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` at the bottom/right so that ``H`` and ``W`` are multiples.

    Reflect padding, as SwinIR and HAT pad at test time; an axis too short to reflect (the pad
    would reach past its far end) is padded by replicating its last pixel instead.

    Returns:
        ``(B, C, H', W')`` with ``H' = ceil(H / multiple) * multiple`` (same for ``W``).
    """
    h, w = x.shape[-2:]
    if not tracing() and h % multiple == 0 and w % multiple == 0:
        return x  # (symbolic sizes take the gather below: no branch on them)
    rows, cols = _pad_index(h, multiple, x.device), _pad_index(w, multiple, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def crop_padding(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: the top-left ``size = (H, W)`` of ``(B, C, H', W')``.

    While tracing with symbolic sizes (export) the crop is an index gather, which needs no
    proof that ``H <= H'`` (a slice does, and a compiler cannot always give one).
    """
    h, w = size
    if tracing():
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        return x.index_select(-2, rows).index_select(-1, cols)
    return x[:, :, :h, :w]


def _pad_index(n: int, multiple: int, device: torch.device) -> torch.Tensor:
    """Source index of each position of ``n`` padded up to a multiple: reflect when the pad is
    shorter than ``n``, else replicate the last one (:func:`pad_to_multiple`'s rule, as tensor
    arithmetic, so that symbolic sizes need no branch). The padded length is written
    ``multiple * ceil(n / multiple)`` so that a compiler sees it as a multiple."""
    i = torch.arange(multiple * ceil_div(n, multiple), device=device)
    reflected = torch.where(i < n, i, 2 * (n - 1) - i)
    return torch.where(reflected.min() >= 0, reflected, i.clamp(max=n - 1))
