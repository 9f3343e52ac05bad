"""The ``"shifted"`` aggregation backend (formerly ``"lean"``): plain torch that never
materialises the KxK-unfolded input.

The forward accumulates the K*K shifted products in place into the output; the backward
recomputes them tap by tap (autograd wiring lives in :mod:`scaleeq.ops.aggregate`). Only the
inputs are saved for backward, and the largest temporary is one input-sized product per tap.
Out-of-image neighbours are handled by slicing the valid range of each shift instead of
padding, so no padded copy of the input is made either.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["shifted_backward", "shifted_forward", "shifted_sum"]


def _taps(k: int, h: int, w: int) -> Iterator[tuple[int, slice, slice, slice, slice]]:
    """For each tap j = (dy, dx): output rows/cols that have the neighbour, and its rows/cols."""
    p = k // 2
    for j in range(k * k):
        oy, ox = j // k - p, j % k - p
        i0, i1 = max(0, -oy), min(h, h - oy)
        j0, j1 = max(0, -ox), min(w, w - ox)
        if i0 >= i1 or j0 >= j1:
            continue
        yield j, slice(i0, i1), slice(j0, j1), slice(i0 + oy, i1 + oy), slice(j0 + ox, j1 + ox)


def _tap_weight(kernel: torch.Tensor, dist: torch.Tensor | None, j: int) -> torch.Tensor:
    """``kernel[:, :, j] * dist[:, j]`` as ``(B, G, 1, H, W)``."""
    kj = kernel[:, :, j]
    if dist is not None:
        kj = kj * dist[:, j, None]
    return kj[:, :, None]


def shifted_forward(
    x: torch.Tensor, kernel: torch.Tensor, dist: torch.Tensor | None
) -> torch.Tensor:
    """Forward: accumulate the ``k*k`` shifted, weighted inputs in place into the output."""
    b, c, h, w = x.shape
    g, kk = kernel.shape[1], kernel.shape[2]
    k = round(kk**0.5)
    # one layout for all operands: mixed NCHW / channels-last strides make the strided
    # multiply-adds below about 10x slower on the CPU
    x5 = x.contiguous().view(b, g, c // g, h, w)
    kernel = kernel.contiguous()
    dist = dist.contiguous() if dist is not None else None
    centre = kk // 2  # the centre tap covers every output pixel: it initialises the sum
    y5 = torch.empty_like(x5)
    torch.mul(x5, _tap_weight(kernel, dist, centre), out=y5)
    for j, oi, oj, si, sj in _taps(k, h, w):
        if j != centre:
            y5[..., oi, oj].addcmul_(x5[..., si, sj], _tap_weight(kernel, dist, j)[..., oi, oj])
    return y5.view(b, c, h, w)


def shifted_sum(x: torch.Tensor, kernel: torch.Tensor, dist: torch.Tensor | None) -> torch.Tensor:
    """The forward as out-of-place ops on a zero-padded input (for tracers and exporters,
    which cannot record the in-place accumulation): the padded input, the running sum and one
    tap's product are live at a time, never the ``k*k``-unfolded input."""
    b, c, h, w = x.shape
    g, kk = kernel.shape[1], kernel.shape[2]
    k = round(kk**0.5)
    p = k // 2
    xp = torch.nn.functional.pad(x, (p, p, p, p)).view(b, g, c // g, h + 2 * p, w + 2 * p)
    y = xp[..., p : p + h, p : p + w] * _tap_weight(kernel, dist, kk // 2)
    for j in range(kk):
        if j != kk // 2:
            dy, dx = divmod(j, k)
            y = y + xp[..., dy : dy + h, dx : dx + w] * _tap_weight(kernel, dist, j)
    return y.reshape(b, c, h, w)


def shifted_backward(
    gy: torch.Tensor,
    x: torch.Tensor,
    kernel: torch.Tensor,
    dist: torch.Tensor | None,
    needs: tuple[bool, bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients ``(dx, dkernel, ddist)`` for the needed inputs, recomputed tap by tap."""
    b, c, h, w = x.shape
    g, kk = kernel.shape[1], kernel.shape[2]
    k = round(kk**0.5)
    x5 = x.reshape(b, g, c // g, h, w)
    gy5 = gy.reshape(b, g, c // g, h, w)
    need_x, need_k, need_d = needs
    need_d = need_d and dist is not None
    gx5 = torch.zeros_like(x5, memory_format=torch.contiguous_format) if need_x else None
    gkr = (
        torch.zeros_like(kernel, memory_format=torch.contiguous_format)
        if (need_k or need_d)
        else None
    )
    for j, oi, oj, si, sj in _taps(k, h, w):
        if gx5 is not None:  # dx[q] += kr_j[q - o_j] * gy[q - o_j]
            gx5[..., si, sj].addcmul_(gy5[..., oi, oj], _tap_weight(kernel, dist, j)[..., oi, oj])
        if gkr is not None:  # d(kr_j)[p] = sum_{c in g} gy[p] * x[p + o_j]
            gkr[:, :, j, oi, oj] = (gy5[..., oi, oj] * x5[..., si, sj]).sum(dim=2)
    gx = gx5.view(b, c, h, w) if gx5 is not None else None
    gk = gd = None
    if gkr is not None:
        if need_k:
            gk = gkr * dist[:, None] if dist is not None else gkr
        if need_d:
            assert dist is not None
            gd = (gkr * kernel).sum(dim=1)
    return gx, gk, gd
