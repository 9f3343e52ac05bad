"""The kriging neighbourhood aggregation: public op, distance kernel and backend dispatch.

.. math::
    y[b, c, p] = \\sum_j K[b, g(c), j, p] \\; R[b, j, p] \\; x[b, c, p + o_j]

over the ``k x k`` neighbours ``o_j`` (row-major, ``dy`` first) of each HR query ``p`` on the HR
grid, zero outside the grid. ``K`` is the data kernel (per pixel and channel group,
``g(c) = c // (C / G)``); ``R`` the distance kernel (:func:`distance_kernel`).

Backends (chosen once per call):

- ``"reference"``: ``F.unfold``; materialises the ``k*k``-unfolded input (ground truth).
- ``"lean"``: accumulates the shifted products in place; saves only its inputs for backward.
- ``"auto"``: ``"lean"`` (a fused Triton backend is planned for CUDA).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .._checks import check_tensor
from ._lean import aggregate_lean
from ._reference import aggregate_reference
from .coords import AxisQueries

__all__ = [
    "BACKENDS",
    "Backend",
    "KrigingAggregate",
    "distance_kernel",
    "kriging_aggregate",
    "resolve_backend",
]

Backend = Literal["auto", "reference", "lean"]
BACKENDS: tuple[str, ...] = ("auto", "reference", "lean")
_IMPLS = {"reference": aggregate_reference, "lean": aggregate_lean}


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map ``backend`` to a concrete one for ``device``; ``ValueError`` if unknown."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return "lean" if backend == "auto" else backend


def kriging_aggregate(
    x: torch.Tensor,
    kernel: torch.Tensor,
    dist: torch.Tensor | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Aggregate each pixel's ``k x k`` neighbourhood with per-pixel weights ``kernel * dist``.

    Args:
        x: ``(B, C, H, W)`` features on the HR grid.
        kernel: ``(B, G, k*k, H, W)`` data kernel, ``G`` dividing ``C``, ``k`` odd.
        dist: ``(B, k*k, H, W)`` distance kernel, or ``None`` for all ones.
        backend: ``"auto"``, ``"reference"`` or ``"lean"``.

    Returns:
        ``(B, C, H, W)``. Differentiable in ``x``, ``kernel`` and ``dist``.

    Raises:
        ValueError: inconsistent shapes or an unknown backend.
    """
    check_tensor(x, "x", ndim=4, layout="(B, C, H, W)")
    check_tensor(kernel, "kernel", ndim=5, layout="(B, G, k*k, H, W)")
    b, c, h, w = x.shape
    g, kk = kernel.shape[1], kernel.shape[2]
    k = round(kk**0.5)
    if k * k != kk or k % 2 == 0:
        raise ValueError(f"kernel dim 2 must be k*k for an odd k, got {kk}")
    if kernel.shape[0] != b or kernel.shape[3:] != (h, w):
        raise ValueError(
            f"kernel must have shape (B={b}, G, k*k, H={h}, W={w}), got {tuple(kernel.shape)}"
        )
    if c % g != 0:
        raise ValueError(f"kernel groups G={g} must divide the channels of x, C={c}")
    if dist is not None:
        check_tensor(dist, "dist", ndim=4, layout="(B, k*k, H, W)")
        if dist.shape != (b, kk, h, w):
            raise ValueError(f"dist must have shape {(b, kk, h, w)}, got {tuple(dist.shape)}")
    impl = _IMPLS[resolve_backend(backend, x.device)]
    return impl(x, kernel, dist)


def distance_kernel(
    qy: AxisQueries, qx: AxisQueries, lengthscale: torch.Tensor, kernel_size: int
) -> torch.Tensor:
    """RBF distance kernel ``R[b, j, p] = exp(-d^2 / (2 l^2))`` for the queries of a region.

    ``d`` is the distance, in LR-pixel units, between query ``p`` and the centre of the LR
    pixel that neighbour ``p + o_j`` was sampled from. The axis queries must extend
    ``kernel_size // 2`` beyond the region on each side (the neighbours' nearest pixels); the
    result covers the inner region. Separable: ``R = exp(-dy^2 / 2l^2) * exp(-dx^2 / 2l^2)``.

    Args:
        qy, qx: queries of the region plus a ``kernel_size // 2`` margin, ``(B, n + 2m)``.
        lengthscale: scalar tensor ``l`` (> 0).
        kernel_size: odd ``k``.

    Returns:
        ``(B, k*k, n_y, n_x)``.
    """
    m = kernel_size // 2

    def axis_factor(q: AxisQueries) -> torch.Tensor:  # (B, k, n)
        n = q.pos.shape[1] - 2 * m
        pos = q.pos[:, m : m + n]
        centres = torch.stack([q.nearest[:, t : t + n] for t in range(kernel_size)], dim=1)
        d = pos[:, None, :] - centres.to(pos.dtype)
        return torch.exp(d.square() * (-0.5 / lengthscale.square()))

    fy, fx = axis_factor(qy), axis_factor(qx)  # (B, k, ny), (B, k, nx)
    r = fy[:, :, None, :, None] * fx[:, None, :, None, :]  # (B, k, k, ny, nx)
    return r.flatten(1, 2)


class KrigingAggregate(nn.Module):
    """Module form of :func:`kriging_aggregate` with a fixed backend.

    Shape:
        - x: ``(B, C, H, W)``, kernel: ``(B, G, k*k, H, W)``, dist: ``(B, k*k, H, W)`` or None
        - output: ``(B, C, H, W)``
    """

    def __init__(self, backend: str = "auto") -> None:
        super().__init__()
        resolve_backend(backend, torch.device("cpu"))
        self.backend = backend

    def forward(
        self, x: torch.Tensor, kernel: torch.Tensor, dist: torch.Tensor | None = None
    ) -> torch.Tensor:
        return kriging_aggregate(x, kernel, dist, backend=self.backend)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"
