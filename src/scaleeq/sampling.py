"""Sampling an image at a render plan's HR queries: the skip connections of retrofitted models
(an architecture's own global residual carried to any scale) and the bicubic skip of EQSR, at
exactly the positions the upsampler renders."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import RenderPlan

__all__ = ["SAMPLE_MODES", "sample_bicubic", "sample_image"]


def sample_bicubic(img: torch.Tensor, plan: RenderPlan) -> torch.Tensor:
    """Bicubic interpolation of ``img`` at the plan's HR queries (its window).

    Uses the same query positions as the upsampler, so it serves as an exact skip connection
    for windowed rendering. (PyTorch's bicubic: ``a = -0.75``, border clamped.)

    Args:
        img: ``(B, C, h, w)`` with ``(h, w) == plan.lr_size``.
        plan: the render plan.

    Returns:
        ``(B, C, height, width)``.
    """
    return sample_image(img, plan, "bicubic")


#: The interpolations :func:`sample_image` offers (a skip connection's kinds).
SAMPLE_MODES = ("nearest", "bilinear", "bicubic")


def sample_image(img: torch.Tensor, plan: RenderPlan, mode: str) -> torch.Tensor:
    """``img`` interpolated at the plan's HR queries (its window): ``"nearest"`` (each query's
    nearest pixel, the rule of :mod:`scaleeq.ops.coords`), ``"bilinear"`` or ``"bicubic"``
    (PyTorch's, ``a = -0.75``; borders clamped). The skip connections of retrofitted models
    (an architecture's own global residual, carried to any scale) use it.

    Args:
        img: ``(B, C, h, w)`` with ``(h, w) == plan.lr_size`` (a stride-1 plan).
        plan: the render plan.
        mode: one of :data:`SAMPLE_MODES`.

    Returns:
        ``(B, C, height, width)``.
    """
    if mode not in SAMPLE_MODES:
        raise ValueError(f"mode must be one of {SAMPLE_MODES}, got {mode!r}")
    plan.check_input(img, "img")
    lh, lw = plan.lr_size
    qy, qx = plan.queries(dtype=torch.float64)
    if mode == "nearest":
        rows = qy.nearest.to(img.device)  # (B, height)
        cols = qx.nearest.to(img.device)  # (B, width)
        b, c = img.shape[:2]
        idx = (rows[:, :, None] * lw + cols[:, None, :]).reshape(b, 1, -1)
        out = img.reshape(b, c, lh * lw).gather(2, idx.expand(b, c, -1))
        return out.reshape(b, c, rows.shape[1], cols.shape[1])
    gy = ((qy.pos + 0.5) / lh * 2 - 1).to(device=img.device, dtype=img.dtype)  # normalised
    gx = ((qx.pos + 0.5) / lw * 2 - 1).to(device=img.device, dtype=img.dtype)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    return F.grid_sample(img, grid, mode=mode, padding_mode="border", align_corners=False)
