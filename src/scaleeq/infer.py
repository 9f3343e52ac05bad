"""Whole-image upscaling with bounded memory: render the HR output tile by tile.

Each tile is rendered through the upsampler's exact windowed path (a halo around the tile,
zero padding only where the halo leaves the image), so the tiles join without seams and the
result equals the full render up to float rounding, while peak memory follows the tile size,
not the output size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import torch
from torch import nn

from ._checks import check_int, check_tensor
from .contracts import model_kind
from .geometry import RenderPlan, render_plan
from .precision import autocast
from .scale import ScaleLike

__all__ = ["upscale"]

#: The default size guard of :func:`upscale`: the whole output (``B * H * W``) it may
#: allocate (2^31 pixels: 24 GiB as float32 RGB). Each tile is also held to
#: ``scaleeq.geometry.MAX_RENDER_PIXELS``.
MAX_OUTPUT_PIXELS = 2**31


def with_progress(tiles: list, desc: str) -> Iterable:
    """``tiles`` wrapped in a tqdm progress bar, or unchanged where tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return tiles
    return tqdm(tiles, desc=desc, unit="tile", leave=False)


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` near-equal spans ``(start, length)`` covering ``range(n)``."""
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return [(a, b - a) for a, b in itertools.pairwise(edges) if b > a]


@torch.no_grad()
def upscale(
    model: nn.Module,
    lr: torch.Tensor,
    *,
    scale: ScaleLike | None = None,
    size: tuple[int, int] | None = None,
    max_window_pixels: int | None = None,
    max_output_pixels: int = MAX_OUTPUT_PIXELS,
    progress: bool = False,
    precision: str = "fp32",
) -> torch.Tensor:
    """Upscale ``lr`` to the full output, rendering at most ``max_window_pixels`` HR pixels at once.

    ``model`` is an SR model (:class:`scaleeq.contracts.SRModel`: ``features`` + ``render`` +
    ``upsampler``, e.g. :class:`~scaleeq.ArbitraryScaleSR`, :class:`~scaleeq.models.EQSR`; also
    a spandrel descriptor of a scaleeq file, see :mod:`scaleeq.spandrel`),
    or a bare upsampler (:class:`scaleeq.contracts.Upsampler`), whose ``lr`` is then its LR
    feature map. One :class:`~scaleeq.geometry.RenderPlan` is made for the call; each tile
    renders a window of it. Runs without gradients. An upsampler whose ``window_exact`` is
    False (the official configuration) is rendered whole.

    Args:
        model: SR model or upsampler (see above).
        lr: ``(B, C, h, w)`` input.
        scale: a scale argument; or give ``size``.
        size: explicit output size ``(H, W)``.
        max_window_pixels: tile budget in HR pixels (tiles are near-equal, each
            ``height * width <= max_window_pixels``). Default: the upsampler's
            ``default_window_pixels`` attribute if it has one (the Neural Kriging upsampler sizes
            its tiles for the CPU cache), else ``256 * 256``.
        max_output_pixels: the size guard: refuse (``ValueError``, before allocating) an output
            of more than this many pixels ``B * H * W``.
        progress: show a tqdm progress bar over tiles (if tqdm is installed).
        precision: ``"fp32"`` (default), ``"bf16"``, ``"fp16"`` or ``"auto"`` (bf16 where the
            hardware computes it natively): the model runs under ``torch.autocast`` at that
            precision; the plan, sizes and offsets do not depend on it (:mod:`scaleeq.precision`).

    Returns:
        ``(B, C_out, H, W)``, in ``lr``'s dtype.

    Raises:
        TypeError: ``model`` exposes neither contract, or bad argument types.
        ValueError: bad sizes or scales, ``max_window_pixels < 1`` or an unknown ``precision``.
    """
    if type(model).__module__.startswith(("spandrel", "scaleeq.spandrel")):
        from .spandrel import unwrap  # a spandrel descriptor of a scaleeq file

        model = unwrap(model)
    check_tensor(lr, "lr", ndim=4, layout="(B, C, h, w)")
    if max_window_pixels is not None:
        check_int(max_window_pixels, "max_window_pixels")
    b, _, h, w = lr.shape
    check_int(max_output_pixels, "max_output_pixels")
    plan = render_plan((h, w), b, scale=scale, size=size, max_pixels=max_output_pixels)
    with autocast(precision, lr.device):
        return _render_all(model, lr, plan, max_window_pixels, progress)


def _render_all(
    model: nn.Module,
    lr: torch.Tensor,
    plan: RenderPlan,
    max_window_pixels: int | None,
    progress: bool,
) -> torch.Tensor:
    """The body of :func:`upscale` for one checked plan: features once, then tile by tile."""
    b = lr.shape[0]
    if model_kind(model) == "sr_model":
        feat = model.features(lr, plan.scale)
        up, render = model.upsampler, model.render
    else:  # a bare upsampler (NK, LIIF, bicubic features): lr is its feature map
        feat, up, render = lr, model, model
    if max_window_pixels is None:
        max_window_pixels = int(up.default_window_pixels)
    if not up.window_exact:  # e.g. the official ECA attention: whole renders only
        return render(feat, plan=plan).to(lr.dtype)
    assert plan.out_size is not None
    out_h, out_w = plan.out_size
    side = max(1, math.isqrt(max_window_pixels))
    rows = _split(out_h, math.ceil(out_h / side))
    tile_h = max(t for _, t in rows)
    cols = _split(out_w, math.ceil(out_w / max(1, max_window_pixels // tile_h)))
    tiles = [(top, th, left, tw) for top, th in rows for left, tw in cols]
    if progress:
        tiles = with_progress(tiles, "upscale")
    out: torch.Tensor | None = None
    for top, th, left, tw in tiles:
        tile = render(feat, plan=plan.with_window((top, left, th, tw)))
        if out is None:
            out = tile.new_empty(b, tile.shape[1], out_h, out_w, dtype=lr.dtype)
        out[:, :, top : top + th, left : left + tw] = tile
    assert out is not None
    return out
