"""The kriging neighbourhood aggregation: public op, distance kernel and backend dispatch.

.. math::
    y[b, c, p] = \\sum_j K[b, g(c), j, p] \\; R[b, j, p] \\; x[b, c, p + o_j]

over the ``k x k`` neighbours ``o_j`` (row-major, ``dy`` first) of each HR query ``p`` on the HR
grid, zero outside the grid. ``K`` is the data kernel (per pixel and channel group,
``g(c) = c // (C / G)``); ``R`` the distance kernel (:func:`distance_kernel`).

Backends (chosen once per call):

- ``"reference"``: ``F.unfold``; materialises the ``k*k``-unfolded input (ground truth).
- ``"shifted"``: accumulates the ``k*k`` shifted products in place; saves only its inputs for
  backward. Formerly ``"lean"``, still accepted (:data:`BACKEND_ALIASES`).
- ``"triton"``: fused Triton kernels (CUDA tensors; CPU tensors only under Triton's
  interpreter, ``TRITON_INTERPRET=1``).
- ``"auto"``: ``"triton"`` for CUDA tensors when Triton is installed, else ``"shifted"``.

Under ``torch.compile``, ``shifted`` and ``triton`` run through the registered custom op
``scaleeq::kriging_aggregate`` (with a fake implementation and autograd registration), so the
aggregation is one opaque node instead of a graph break (torch >= 2.4). Eager calls use an
equivalent ``autograd.Function`` with the same forward and backward: the custom op's Python
dispatch imports torch's compiler stack on first use (about 150 MB of memory).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Literal

import torch

from .._checks import check_tensor, exporting, tracing
from ._reference import aggregate_reference
from ._shifted import shifted_backward, shifted_forward, shifted_sum
from .coords import AxisQueries

__all__ = [
    "BACKENDS",
    "BACKEND_ALIASES",
    "Backend",
    "aggregate",
    "check_backend",
    "distance_kernel",
    "kriging_aggregate",
    "resolve_backend",
    "select_backend",
    "triton_available",
]

Backend = Literal["auto", "reference", "shifted", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "reference", "shifted", "triton")

#: Former spellings of backend names, still accepted wherever a backend is
#: (``"lean"``: ``"shifted"``).
BACKEND_ALIASES: dict[str, str] = {"lean": "shifted"}


@functools.cache
def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def _triton_module():  # imported on first use only
    from . import _triton

    return _triton


def check_backend(backend: object) -> str:
    """``backend`` under its current name: one of :data:`BACKENDS` (``"auto"`` kept as it is),
    a former spelling (:data:`BACKEND_ALIASES`) replaced by the name it now has.

    Raises:
        ValueError: unknown backend (the message names the choices).
    """
    if isinstance(backend, str):
        backend = BACKEND_ALIASES.get(backend, backend)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend  # type: ignore[return-value]


def select_backend(backend: str, device: torch.device) -> str:
    """The concrete backend that runs ``backend`` for tensors on ``device``: ``"auto"``
    replaced by its pick, a former spelling by its current name.

    Raises:
        ValueError: unknown backend, or ``"triton"`` where it cannot run.
    """
    backend = check_backend(backend)
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "shifted"
    if backend == "triton":
        if not triton_available():
            raise ValueError(
                "backend='triton' needs the triton package (pip install scaleeq[triton])"
            )
        if device.type != "cuda" and not _triton_module().interpreting():
            raise ValueError(
                f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for testing), got "
                f"tensors on {device.type}"
            )
    return backend


#: Former name of :func:`select_backend`, still importable.
resolve_backend = select_backend


def _forward_impl(
    x: torch.Tensor, kernel: torch.Tensor, dist: torch.Tensor | None, backend: str
) -> torch.Tensor:
    if backend == "triton":
        return _triton_module().aggregate_triton_forward(x, kernel, dist)
    return shifted_forward(x, kernel, dist)


def _backward_impl(
    gy: torch.Tensor,
    x: torch.Tensor,
    kernel: torch.Tensor,
    dist: torch.Tensor | None,
    backend: str,
    needs: tuple[bool, bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    if backend == "triton":
        return _triton_module().aggregate_triton_backward(gy.contiguous(), x, kernel, dist, needs)
    return shifted_backward(gy, x, kernel, dist, needs)


class _AggregateFunction(torch.autograd.Function):
    """Eager path: the same forward / backward as the custom op, without its dispatch."""

    @staticmethod
    def forward(ctx, x, kernel, dist, backend):
        ctx.save_for_backward(x, kernel, dist)
        ctx.backend = backend
        return _forward_impl(x, kernel, dist, backend)

    @staticmethod
    def backward(ctx, gy):
        x, kernel, dist = ctx.saved_tensors
        gx, gk, gd = _backward_impl(
            gy, x, kernel, dist, ctx.backend, tuple(ctx.needs_input_grad[:3])
        )
        return gx, gk, gd, None


_HAS_CUSTOM_OP = hasattr(torch.library, "custom_op")  # torch >= 2.4

if _HAS_CUSTOM_OP:

    @torch.library.custom_op("scaleeq::kriging_aggregate", mutates_args=())
    def _aggregate_op(
        x: torch.Tensor, kernel: torch.Tensor, dist: torch.Tensor | None, backend: str
    ) -> torch.Tensor:
        return _forward_impl(x, kernel, dist, backend)

    @_aggregate_op.register_fake
    def _(x, kernel, dist, backend):
        return x.new_empty(x.shape)

    @torch.library.custom_op("scaleeq::kriging_aggregate_backward", mutates_args=())
    def _aggregate_backward_op(
        gy: torch.Tensor,
        x: torch.Tensor,
        kernel: torch.Tensor,
        dist: torch.Tensor | None,
        backend: str,
        need_x: bool,
        need_kernel: bool,
        need_dist: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gx, gk, gd = _backward_impl(gy, x, kernel, dist, backend, (need_x, need_kernel, need_dist))
        empty = x.new_empty(0)  # custom ops return tensors: an empty one stands for "not needed"
        return (
            gx if gx is not None else empty,
            gk if gk is not None else empty.clone(),
            gd if gd is not None else empty.clone(),
        )

    @_aggregate_backward_op.register_fake
    def _(gy, x, kernel, dist, backend, need_x, need_kernel, need_dist):
        gx = x.new_empty(x.shape) if need_x else x.new_empty(0)
        gk = kernel.new_empty(kernel.shape) if need_kernel else x.new_empty(0)
        gd = dist.new_empty(dist.shape) if (need_dist and dist is not None) else x.new_empty(0)
        return gx, gk, gd

    def _setup_context(ctx, inputs, output) -> None:
        x, kernel, dist, backend = inputs
        ctx.save_for_backward(x, kernel, dist)
        ctx.backend = backend

    def _backward(ctx, gy):
        x, kernel, dist = ctx.saved_tensors
        need_x, need_k, need_d = ctx.needs_input_grad[:3]
        need_d = bool(need_d and dist is not None)
        gx, gk, gd = _aggregate_backward_op(
            gy, x, kernel, dist, ctx.backend, need_x, need_k, need_d
        )
        return (gx if need_x else None, gk if need_k else None, gd if need_d else None, None)

    _aggregate_op.register_autograd(_backward, setup_context=_setup_context)


def _dispatch(
    x: torch.Tensor, kernel: torch.Tensor, dist: torch.Tensor | None, backend: str
) -> torch.Tensor:
    # The custom op is what torch.compile sees; eager calls skip its Python dispatch, whose
    # first use imports torch._dynamo and sympy (about 150 MB and a second or two).
    if exporting():  # torch.export / ONNX: out-of-place ops an exporter can translate
        return shifted_sum(x, kernel, dist)
    if _HAS_CUSTOM_OP and tracing():
        return _aggregate_op(x, kernel, dist, backend)
    return _AggregateFunction.apply(x, kernel, dist, backend)


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
        backend: ``"auto"``, ``"reference"``, ``"shifted"`` or ``"triton"`` (or ``"lean"``,
            the former name of ``"shifted"``).

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
    return aggregate(x, kernel, dist, backend=backend)


def aggregate(
    x: torch.Tensor, kernel: torch.Tensor, dist: torch.Tensor | None, *, backend: str = "auto"
) -> torch.Tensor:
    """:func:`kriging_aggregate` without its checks, for callers that built consistent
    operands themselves (the kriging blocks): same shapes, same result."""
    concrete = select_backend(backend, x.device)
    if concrete == "reference":
        return aggregate_reference(x, kernel, dist)
    return _dispatch(x, kernel, dist, concrete)


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
