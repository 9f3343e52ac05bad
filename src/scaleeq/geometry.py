"""Render plans: the output geometry of one call, computed once and passed down.

Every scaleeq model call turns ``(lr_size, batch, scale | size, window)`` into one
:class:`RenderPlan` (:func:`render_plan`); the AFE layers, the upsampler and the bicubic skip
all read that plan instead of re-deriving sizes from the scale. The plan holds

- ``scale``: the requested per-sample factors ``r`` ``(N, 2)`` float64 (``N`` = 1 when one
  scale serves the batch). This is what scale-aware layers are conditioned on: the scale that
  was asked for, or ``(H / h, W / w)`` when only ``size`` was given.
- ``sizes``: each sample's full output size ``(B, 2)`` int64, by the output-size rule of
  :mod:`scaleeq.scale` (``round(h * r_h)``, halves up), or the explicit ``size``;
- the window ``(top, left, height, width)`` to render (the whole output by default);
- :meth:`RenderPlan.queries`: the per-axis query geometry (global HR index, nearest LR pixel,
  offset, validity) of the window grown by a halo, which every renderer builds from.

All tensors of a plan live on the CPU (they are small and exact); renderers move what they need.

**Compilers.** A plan is built from Python numbers where it can (a float or pair scale, an
explicit size, int windows), so under dynamo the output size is a symbolic expression of the
inputs. What compiles once for all scales: a per-sample scale *tensor* with a window (the
training call) and an explicit ``size=(H, W)`` (ints are dynamic). A Python float scale stays
symbolic under dynamo alone (``backend="eager"``), but AOT backends (``aot_eager``, inductor)
specialise on it, so each new float value compiles again (docs/design.md, "Compilers"). Checks
that read tensor values (a per-sample scale's sign, a per-sample window's bounds) run in eager
mode and are skipped while tracing, as kornia does. Rendering the *whole* output at a per-sample
tensor scale needs the output size as a Python int, which a trace can only get from
``Tensor.item()`` (``torch._dynamo.config.capture_scalar_outputs = True``); with a window (the
training call) no such read is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ._checks import check_render_pixels, tracing
from .ops.coords import (
    AxisQueries,
    AxisRounding,
    Window,
    axis_queries,
    ceil_div,
    resolve_window,
)
from .scale import (
    ScaleLike,
    check_scale_batch,
    check_size,
    parse_scale,
    rule_output_size,
    rule_output_sizes,
    uniform_factors,
)

__all__ = [
    "MAX_RENDER_PIXELS",
    "RenderPlan",
    "render_plan",
    "resolve_plan",
    "resolve_scale_and_size",
]

#: The size guard: the most HR pixels (``batch * height * width``) one call may render at
#: once. Whole renders above it raise a ``ValueError`` before anything is allocated; render
#: larger outputs with :func:`scaleeq.upscale` (tiles) or windows. Pass ``max_pixels`` to
#: :func:`render_plan` to use another limit.
MAX_RENDER_PIXELS = 2**28


@dataclass(frozen=True, eq=False)
class RenderPlan:
    """The geometry of one render: scales, output sizes and the window (immutable).

    Build one with :func:`render_plan`; pass it to models and upsamplers as ``plan=``.

    Attributes:
        lr_size: ``(h, w)`` of the LR input (or feature map).
        batch: ``B``.
        scale: ``(N, 2)`` float64, ``N`` in ``(1, B)``: the requested ``(r_h, r_w)`` per sample,
            what scale-aware layers are conditioned on.
        sizes: ``(B, 2)`` int64: each sample's full output size ``(H_b, W_b)``.
        out_size: the full output size shared by the batch as Python ints, or ``None`` when it
            is not known without reading tensor values (per-sample scales while tracing).
        top, left: ``(B,)`` int64: the window's position in each sample's output.
        height, width: the window size, shared by the batch.
        whole: the window is the whole output of every sample.
        stride: ``(s_h, s_w)``: the input is a feature map at this stride over the image of
            size ``image_size`` (``(1, 1)``: the input is on the image's pixel grid). Made by
            :meth:`at_stride`; sizes and scales stay those of the image.
        image_size: ``(h, w)`` of the image the output grid follows (``lr_size`` at stride 1).
    """

    lr_size: tuple[int, int]
    batch: int
    scale: torch.Tensor
    sizes: torch.Tensor
    out_size: tuple[int, int] | None
    top: torch.Tensor
    left: torch.Tensor
    height: int
    width: int
    whole: bool
    stride: tuple[int, int] = (1, 1)
    image_size: tuple[int, int] | None = None

    def with_window(self, window: Window | None) -> RenderPlan:
        """The same scales and output sizes, rendering ``window`` (``None``: the whole output).

        Used by tiled rendering: one plan per call, one cheap derived plan per tile.
        """
        top, left, height, width = resolve_window(window, self.sizes, self.out_size)
        check_render_pixels(self.batch, height, width, MAX_RENDER_PIXELS)
        whole = _is_whole(window, top, left, height, width, self.sizes, self.out_size)
        return replace(self, top=top, left=left, height=height, width=width, whole=whole)

    def at_stride(self, stride: tuple[int, int]) -> RenderPlan:
        """The same render read from a feature map at ``stride`` ``(s_h, s_w)`` over this
        plan's input (a pixel-unshuffle front end): the map has ``ceil(h / s)`` rows and
        ``ceil(w / s)`` columns, the output sizes, window and scales are unchanged, and
        :meth:`queries` returns positions in feature pixels (see
        :func:`~scaleeq.ops.coords.axis_queries`). Stride ``(1, 1)`` returns the plan itself.
        """
        if tuple(stride) == (1, 1):
            return self
        if self.stride != (1, 1):
            raise ValueError(f"this plan already reads features at stride {self.stride}")
        h, w = self.lr_size
        sh, sw = (int(v) for v in stride)
        feat = (ceil_div(h, sh), ceil_div(w, sw))
        return replace(self, lr_size=feat, stride=(sh, sw), image_size=(h, w))

    def queries(
        self,
        margin: int = 0,
        *,
        dtype: torch.dtype = torch.float32,
        rounding: str | AxisRounding = "exact",
    ) -> tuple[AxisQueries, AxisQueries]:
        """Per-axis query geometry of the window grown by ``margin`` HR pixels on each side;
        ``rounding`` is an :class:`~scaleeq.ops.coords.AxisRounding` or its name (see
        :func:`~scaleeq.ops.coords.axis_queries`).

        Returns:
            ``(rows, cols)``: :class:`~scaleeq.ops.coords.AxisQueries` of shapes
            ``(B, height + 2 margin)`` and ``(B, width + 2 margin)`` (CPU).
        """
        h, w = self.lr_size if self.image_size is None else self.image_size
        sh, sw = self.stride
        qy = axis_queries(
            h, self.sizes[:, 0], self.top - margin, self.height + 2 * margin,
            dtype=dtype, rounding=rounding, stride=sh,
        )  # fmt: skip
        qx = axis_queries(
            w, self.sizes[:, 1], self.left - margin, self.width + 2 * margin,
            dtype=dtype, rounding=rounding, stride=sw,
        )  # fmt: skip
        return qy, qx

    def check_input(self, x: torch.Tensor, name: str) -> None:
        """Raise ``ValueError`` unless ``x`` ``(B, C, h, w)`` matches the plan's batch and size."""
        if x.shape[0] != self.batch or tuple(x.shape[-2:]) != tuple(self.lr_size):
            raise ValueError(
                f"{name} of shape {tuple(x.shape)} does not match the plan, which was made for "
                f"batch {self.batch} and input size {tuple(self.lr_size)}"
            )


def render_plan(
    lr_size: tuple[int, int],
    batch: int,
    *,
    scale: ScaleLike | None = None,
    size: tuple[int, int] | None = None,
    window: Window | None = None,
    max_pixels: int | None = None,
) -> RenderPlan:
    """Resolve a call's ``scale`` / ``size`` / ``window`` into a :class:`RenderPlan`.

    - only ``scale``: output sizes follow the output-size rule, per sample;
    - only ``size=(H, W)``: ``r = (H / h, W / w)`` for every sample;
    - both: they must agree (the rule applied to ``scale`` gives ``size``), else ``ValueError``.

    Args:
        lr_size: ``(h, w)`` of the input.
        batch: ``B``.
        scale: a number, ``(r_h, r_w)``, or a tensor ``()``, ``(B,)`` / ``(B, 2)``.
        size: explicit output size ``(H, W)``.
        window: ``(top, left, height, width)``; ``top`` / ``left`` ints or ``(B,)`` int
            tensors. ``None``: the whole output (then every sample's output must be the same
            size).
        max_pixels: the size guard for the rendered region (``B * height * width``); default
            :data:`MAX_RENDER_PIXELS`. The full output may be larger (tiles, windows).

    Raises:
        TypeError: neither ``scale`` nor ``size``, or malformed arguments.
        ValueError: invalid factors, disagreeing ``scale`` and ``size``, an empty output, a
            batch mismatch, a window outside the output, or a region above the size guard.

    Example:
        >>> p = render_plan((10, 12), 2, scale=2.5)
        >>> p.out_size, p.scale.tolist()
        ((25, 30), [[2.5, 2.5]])
    """
    h, w = (v if isinstance(v, torch.SymInt) else int(v) for v in lr_size)  # keep symbolic
    if batch < 1:
        raise ValueError(f"the input batch is empty (0 samples, input of size {(h, w)})")
    if h < 1 or w < 1:
        raise ValueError(f"the input has an empty side: size {(h, w)}")
    if size is not None:
        size = check_size(size)
    if scale is None and size is None:
        raise TypeError("give scale (a number, a pair or a tensor) or size=(H, W); got neither")
    if scale is None:
        assert size is not None
        r = torch.tensor([[size[0] / h, size[1] / w]], dtype=torch.float64)
        out_size: tuple[int, int] | None = size
    else:
        uniform = uniform_factors(scale)
        if uniform is not None:  # Python numbers: sizes stay Python (symbolic under dynamo)
            r = torch.tensor([list(uniform)], dtype=torch.float64)
            out_size = rule_output_size((h, w), uniform)
            sizes = torch.tensor([list(out_size)], dtype=torch.int64).expand(batch, 2)
        else:
            r = parse_scale(scale, device="cpu", dtype=torch.float64)
            check_scale_batch(r, batch, "scale")
            sizes = rule_output_sizes((h, w), r).expand(batch, 2)
            out_size = None
            if not tracing() and bool((sizes == sizes[:1]).all()):
                out_size = (int(sizes[0, 0]), int(sizes[0, 1]))
        if size is not None:
            if out_size is not None and out_size != size:
                raise ValueError(
                    f"scale and size disagree: scale gives output size {out_size} for input size "
                    f"{(h, w)} but size={size}; give one of them, or consistent values"
                )
            if out_size is None and not tracing():
                raise ValueError(
                    f"scale and size disagree: scale gives output sizes "
                    f"{sizes.unique(dim=0).tolist()[:4]} for input size {(h, w)} but size={size}"
                )
            out_size = size
    if size is not None:  # the explicit size, for every sample
        sizes = torch.tensor([list(size)], dtype=torch.int64).expand(batch, 2)
    sizes = sizes.contiguous()
    if window is None and out_size is None and tracing():  # per-sample scale, tracing
        out_size = (int(sizes[0, 0].item()), int(sizes[0, 1].item()))
    top, left, height, width = resolve_window(window, sizes, out_size)
    check_render_pixels(
        batch, height, width, MAX_RENDER_PIXELS if max_pixels is None else max_pixels
    )
    whole = _is_whole(window, top, left, height, width, sizes, out_size)
    return RenderPlan((h, w), batch, r, sizes, out_size, top, left, height, width, whole)


def resolve_scale_and_size(
    in_size: tuple[int, int],
    batch_size: int,
    *,
    scale: ScaleLike | None = None,
    size: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Resolve ``scale`` and/or ``size`` into a ``(B, 2)`` scale tensor and an output size.

    - only ``scale``: the size follows the output-size rule (:func:`~scaleeq.scale.output_size`);
    - only ``size=(H, W)``: ``r = (H / h, W / w)`` for every sample;
    - both: they must agree (``output_size(in_size, scale) == size``), else ``ValueError``.

    Returns:
        ``(scale, (H, W))`` with ``scale`` of shape ``(B, 2)``.
    """
    plan = render_plan(in_size, batch_size, scale=scale, size=size)
    assert plan.out_size is not None
    r = plan.scale.to(device=device, dtype=dtype or torch.get_default_dtype())
    return r.expand(batch_size, 2).contiguous(), plan.out_size


def _is_whole(
    window: Window | None,
    top: torch.Tensor,
    left: torch.Tensor,
    height: int,
    width: int,
    sizes: torch.Tensor,
    out_size: tuple[int, int] | None,
) -> bool:
    if window is None:
        return True
    if out_size is not None and (height, width) != tuple(out_size):
        return False
    if isinstance(window[0], int) and isinstance(window[1], int):
        return window[0] == 0 and window[1] == 0 and out_size is not None
    if tracing():  # a tensor window while tracing: render it as a window (also exact)
        return False
    return bool(((top == 0) & (left == 0)).all() and (sizes == torch.tensor([height, width])).all())


def resolve_plan(
    x: torch.Tensor,
    *,
    scale: ScaleLike | None,
    size: tuple[int, int] | None,
    window: Window | None,
    plan: RenderPlan | None,
    name: str = "feat",
) -> RenderPlan:
    """The plan for input ``x`` ``(B, C, h, w)``: ``plan`` itself (checked against ``x``), or
    one made from ``scale`` / ``size`` / ``window``.

    Raises:
        TypeError: ``plan`` given together with ``scale``, ``size`` or ``window``, or not a
            :class:`RenderPlan`.
        ValueError: ``plan`` made for another batch or input size.
    """
    if plan is None:
        return render_plan(
            (x.shape[-2], x.shape[-1]), x.shape[0], scale=scale, size=size, window=window
        )
    if not isinstance(plan, RenderPlan):
        raise TypeError(f"plan must be a scaleeq.geometry.RenderPlan, got {type(plan).__name__}")
    if scale is not None or size is not None or window is not None:
        raise TypeError("give either plan= or scale= / size= / window=, not both")
    plan.check_input(x, name)
    return plan


def lr_box(
    rows: AxisQueries, cols: AxisQueries, lr_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The LR rows / columns ``[y0, y1) x [x0, x1)`` that queries read through their nearest
    pixel (a tile reads a small part of the map). While tracing: the whole map (reading the
    bounds would need tensor values; the result is the same)."""
    if tracing():
        return 0, lr_size[0], 0, lr_size[1]
    return (
        int(rows.nearest.min()),
        int(rows.nearest.max()) + 1,
        int(cols.nearest.min()),
        int(cols.nearest.max()) + 1,
    )
