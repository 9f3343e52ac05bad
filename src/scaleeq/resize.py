"""MATLAB-compatible bicubic ``imresize`` in torch (batched, any device and dtype).

The SR benchmark protocol makes LR images with MATLAB's ``imresize(hr, 1/r, 'bicubic')``:
the cubic kernel with ``a = -0.5``, widened by ``1/r`` when downscaling (antialiasing), pixel
centres aligned (``u = x / s + (1 - 1/s) / 2``, 1-based), symmetric (mirror) boundary handling,
and the output size ``ceil(n * s)`` for a scale ``s``. ``F.interpolate(mode="bicubic")`` differs
in all of these (``a = -0.75``, no antialiasing, clamped borders), which costs a bicubic baseline
1.5-1.8 dB.

The resize is separable: one ``(out, in)`` weight matrix per axis, built in float64 and applied
as two matrix products, so the result is exact to the input dtype's rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._checks import check_tensor
from .geometry import MAX_RENDER_PIXELS
from .scale import parse_scale

__all__ = ["MAX_RESIZE_WEIGHTS", "cubic", "imresize", "resize_weights"]

#: The most entries one axis's weight matrix may have (``out_len x taps``, float64). Only a
#: downscale far below one output pixel reaches it (``scale=1e-9`` would need a kernel 4e9
#: input pixels wide); see :func:`imresize`'s size guard.
MAX_RESIZE_WEIGHTS = 2**24


def _taps(scale: float, antialias: bool) -> int:
    """Kernel taps per output pixel on one axis (the weight matrix is ``out_len x taps``)."""
    return math.ceil(4.0 / scale if scale < 1 and antialias else 4.0) + 2


def _check_resize_size(
    lead: int, in_size: tuple[int, int], out_size: tuple[int, int], scales, antialias: bool
) -> None:
    """The size guard of :func:`imresize`, before anything is allocated: the output (every
    leading dim counted) is held to :data:`scaleeq.geometry.MAX_RENDER_PIXELS`, each axis's
    weight matrix to :data:`MAX_RESIZE_WEIGHTS` entries."""
    out_h, out_w = out_size
    if lead * out_h * out_w > MAX_RENDER_PIXELS:
        raise ValueError(
            f"imresize: the requested output of {lead} x {out_h} x {out_w} = "
            f"{lead * out_h * out_w:.3g} pixels (input size {in_size}) exceeds the limit of "
            f"{MAX_RENDER_PIXELS:.3g} pixels per call (scaleeq.geometry.MAX_RENDER_PIXELS); "
            "resize fewer images or a smaller size per call"
        )
    for axis, out_len, s in (("height", out_h, scales[0]), ("width", out_w, scales[1])):
        taps = _taps(s, antialias)
        if out_len * taps > MAX_RESIZE_WEIGHTS:
            raise ValueError(
                f"imresize: the requested output size {(out_h, out_w)} from input size {in_size} "
                f"(factor {s:.3g} along the {axis}) needs a {out_len} x {taps} weight matrix, "
                f"above the limit of {MAX_RESIZE_WEIGHTS:.3g} entries "
                "(scaleeq.resize.MAX_RESIZE_WEIGHTS)"
            )


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's and PIL's bicubic)."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = 1.5 * ax3 - 2.5 * ax2 + 1
    far = -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2
    return torch.where(ax <= 1, near, torch.where(ax <= 2, far, torch.zeros_like(ax)))


def resize_weights(
    in_len: int, out_len: int, scale: float, *, antialias: bool = True
) -> torch.Tensor:
    """The ``(out_len, in_len)`` float64 matrix MATLAB's bicubic ``imresize`` applies on one axis.

    Args:
        in_len: input length.
        out_len: output length.
        scale: the factor ``s`` (``out / in`` when sizes were given).
        antialias: widen the kernel by ``1 / s`` when downscaling (MATLAB's default).

    Each row sums to 1; indices outside the input are mirrored back into it.
    """
    widen = scale < 1 and antialias
    kernel_width = 4.0 / scale if widen else 4.0
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of each output centre
    left = torch.floor(u - kernel_width / 2)
    taps = _taps(scale, antialias)
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)  # (out, taps), 1-based
    dist = u[:, None] - idx
    w = scale * cubic(scale * dist) if widen else cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    # symmetric boundary: mirror into 1..in_len (period 2*in_len), then to 0-based
    mirrored = torch.remainder(idx - 1, 2 * in_len)
    mirrored = torch.where(mirrored >= in_len, 2 * in_len - 1 - mirrored, mirrored).long()
    out = torch.zeros(out_len, in_len, dtype=torch.float64)
    out.scatter_add_(1, mirrored, w)
    return out


def imresize(
    x: torch.Tensor,
    *,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """Resize like MATLAB's ``imresize(x, scale_or_size, 'bicubic')``.

    Args:
        x: ``(..., H, W)`` floating-point images (any leading dims, any device).
        scale: factor, or ``(s_h, s_w)``; output ``(ceil(H s_h), ceil(W s_w))`` (MATLAB's rule).
        size: explicit output size ``(H', W')`` instead; the factor is then ``H' / H``, ``W' / W``.
        antialias: widen the kernel when downscaling (MATLAB's default ``true``).

    Returns:
        ``(..., H', W')`` in the dtype of ``x``; values are not clamped (clamp or round as the
        protocol needs, e.g. ``.clamp(0, 1)`` or quantise to 8 bits).

    Raises:
        TypeError / ValueError: neither or both of ``scale`` and ``size``, or bad values.
        ValueError: the size guard, before allocating: an output of more than
            :data:`scaleeq.geometry.MAX_RENDER_PIXELS` pixels (all leading dims counted), or a
            per-axis weight matrix above :data:`MAX_RESIZE_WEIGHTS` entries (a factor that
            shrinks a side far below one pixel, e.g. ``scale=1e-9``); the message names the
            requested output size.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise TypeError(
            f"x must be a tensor of shape (..., H, W), got {getattr(x, 'shape', type(x).__name__)}"
        )
    check_tensor(x.flatten(0, -3) if x.ndim > 2 else x[None], "x", ndim=3, layout="(..., H, W)")
    if min(x.shape[-2:]) < 1:
        raise ValueError(f"x has an empty side: shape {tuple(x.shape)}")
    if (scale is None) == (size is None):
        raise TypeError("give exactly one of scale and size")
    h, w = x.shape[-2:]
    if size is not None:
        if (
            not isinstance(size, Sequence)
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
        ):
            raise ValueError(f"size must be a pair of ints >= 1, got {size!r}")
        out_h, out_w = size
        s_h, s_w = out_h / h, out_w / w
    else:
        r = parse_scale(scale, dtype=torch.float64)  # the library's scale checks
        if r.shape[0] != 1:
            raise ValueError(
                f"scale must be one number or an (s_h, s_w) pair, got {r.shape[0]} scales"
            )
        s_h, s_w = r[0].tolist()
        out_h, out_w = math.ceil(h * s_h - 1e-9), math.ceil(w * s_w - 1e-9)
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"scale {scale!r} maps size {(h, w)} to an empty output {(out_h, out_w)}"
            )
    _check_resize_size(math.prod(x.shape[:-2]), (h, w), (out_h, out_w), (s_h, s_w), antialias)
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    wh = resize_weights(h, out_h, s_h, antialias=antialias).to(x.device, compute)
    ww = resize_weights(w, out_w, s_w, antialias=antialias).to(x.device, compute)
    y = torch.matmul(wh, x.to(compute))  # (..., H', W)
    y = torch.matmul(y, ww.t())  # (..., H', W')
    return y.to(x.dtype)
