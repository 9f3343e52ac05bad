"""Plain-torch reference of the kriging aggregation, built on ``F.unfold``: the ground truth.

It materialises the KxK-unfolded input, ``(B, C, K*K, H, W)``, so its memory is about K*K
times the input's; use it to check other backends, not to train.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["aggregate_reference"]


def aggregate_reference(
    x: torch.Tensor, kernel: torch.Tensor, dist: torch.Tensor | None
) -> torch.Tensor:
    """``y[b,c,p] = sum_j kernel[b,g(c),j,p] * dist[b,j,p] * x[b,c,p+o_j]`` via unfold.

    Shapes: x ``(B, C, H, W)``, kernel ``(B, G, K*K, H, W)``, dist ``(B, K*K, H, W)`` or None;
    output ``(B, C, H, W)``. Zero padding ``K // 2``; taps ``o_j`` in row-major (dy-major) order.
    """
    b, c, h, w = x.shape
    g, kk = kernel.shape[1], kernel.shape[2]
    k = round(kk**0.5)
    cols = F.unfold(x, k, padding=k // 2).view(b, g, c // g, kk, h, w)
    weight = kernel if dist is None else kernel * dist[:, None]
    return (cols * weight[:, :, None]).sum(dim=3).view(b, c, h, w)
