"""``ArbitraryScaleModel``: the features / render / forward skeleton of scaleeq's arbitrary-scale
models (:class:`~scaleeq.ArbitraryScaleSR` and :class:`~scaleeq.models.EQSR`).

The public entry points check their inputs and parse the scale once; the hooks that subclasses
write (``_check_lr``, ``_condition``, ``_features``, ``_render``, ``_resolve_plan``) receive the
checked, parsed values and trust them.
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_tensor
from .geometry import RenderPlan, resolve_plan
from .ops.coords import Window
from .scale import ScaleCondition, ScaleLike, check_scale_batch, parse_scale, rule_output_sizes

__all__ = ["ArbitraryScaleModel"]


class ArbitraryScaleModel(nn.Module):
    """LR image -> LR feature map -> pixels at any scale: an implementation of the
    :class:`scaleeq.contracts.SRModel` contract, written once for every model of the package.

    - ``features(lr, scale)``: check ``lr``, parse ``scale`` and check it against the batch,
      turn it into the model's :class:`~scaleeq.scale.ScaleCondition` (:meth:`_condition`) and
      run :meth:`_features`;
    - ``render(feat, *, scale=None, size=None, window=None, plan=None)``: check ``feat``, make
      its plan (:meth:`_resolve_plan`) and run :meth:`_render`;
    - ``forward(lr, *, scale=None, size=None, window=None, plan=None)``: check ``lr`` and make
      the plan once, condition on the plan's scale and sizes, then
      ``_render(_features(lr, cond), plan)``.

    Subclasses implement the hooks:

    - ``_check_lr(lr)``: raise ``TypeError`` / ``ValueError`` for an input the model cannot
      take (the one ``check_tensor`` of a forward);
    - ``_condition(r, sizes)``: what the scale-aware layers see, from the parsed scale ``r``
      ``(N, 2)`` float64 and the output sizes ``(N, 2)`` it gives (default: ``r`` itself).
      :meth:`features` computes the sizes only where :attr:`_condition_reads_sizes` is true
      and passes ``r`` in their place otherwise;
    - ``_features(lr, cond)``: the feature map of a checked ``lr`` at a condition;
    - ``_render(feat, plan)``: the pixels of a checked plan;
    - ``_resolve_plan(feat, *, scale, size, window, plan)``: the plan :meth:`render` hands to
      ``_render`` (default: :func:`~scaleeq.geometry.resolve_plan` for ``feat``).
    """

    #: Whether :meth:`_condition` reads the output sizes (then :meth:`features` computes them).
    _condition_reads_sizes: bool = False

    # -- public entry points ----------------------------------------------------------------
    def features(self, lr: torch.Tensor, scale: ScaleLike) -> torch.Tensor:
        """The LR feature map that :meth:`render` draws from, the scale-aware layers conditioned
        on ``scale``.

        Args:
            lr: ``(B, C_in, h, w)`` image.
            scale: the scale argument of the intended output (1 or ``B`` samples); ``forward``
                passes its plan's scale. A :class:`~scaleeq.scale.ScaleCondition` is taken as
                the model's condition as it is.

        Returns:
            ``(B, C, h', w')`` (see the model's class documentation).

        Raises:
            TypeError, ValueError: bad ``lr`` or ``scale`` (named in the message).
        """
        self._check_lr(lr)
        r = parse_scale(scale, device="cpu", dtype=torch.float64, name="scale")
        check_scale_batch(r, lr.shape[0], "scale")
        if isinstance(scale, ScaleCondition):  # made by a model: its condition already
            return self._features(lr, scale)
        sizes = (
            rule_output_sizes((lr.shape[-2], lr.shape[-1]), r) if self._condition_reads_sizes else r
        )
        return self._features(lr, self._condition(r, sizes))

    def render(
        self,
        feat: torch.Tensor,
        *,
        scale: ScaleLike | None = None,
        size: tuple[int, int] | None = None,
        window: Window | None = None,
        plan: RenderPlan | None = None,
    ) -> torch.Tensor:
        """Render an image (or a window of it) from :meth:`features`.

        Args:
            feat: ``(B, C, h, w)`` from :meth:`features`.
            scale / size: the output grid, as for :class:`~scaleeq.NeuralKrigingUpsampler`.
            window: ``(top, left, height, width)`` of the output to render.
            plan: a :class:`~scaleeq.geometry.RenderPlan` instead of the above.

        Returns:
            ``(B, C_out, H, W)``, or ``(B, C_out, height, width)`` for a window.
        """
        check_tensor(feat, "feat", ndim=4, layout="(B, C, h, w)")
        plan = self._resolve_plan(feat, scale=scale, size=size, window=window, plan=plan)
        return self._render(feat, plan)

    def forward(
        self,
        lr: torch.Tensor,
        *,
        scale: ScaleLike | None = None,
        size: tuple[int, int] | None = None,
        window: Window | None = None,
        plan: RenderPlan | None = None,
    ) -> torch.Tensor:
        """Upscale ``lr`` ``(B, C_in, h, w)`` by ``scale`` or to ``size`` (the ``window`` of it).

        One :class:`~scaleeq.geometry.RenderPlan` per call: ``lr`` is checked and the scale
        parsed once; the plan's ``scale`` (the requested ``r``; ``(H / h, W / w)`` when only
        ``size`` is given) and sizes give the condition of the scale-aware layers, and the same
        plan drives the render.
        """
        self._check_lr(lr)
        plan = resolve_plan(lr, scale=scale, size=size, window=window, plan=plan, name="lr")
        r = plan.scale
        cond = self._condition(r, plan.sizes[: r.shape[0]])  # sizes: the plan's, per sample
        return self._render(self._features(lr, cond), plan)

    # -- hooks ------------------------------------------------------------------------------
    def _check_lr(self, lr: torch.Tensor) -> None:
        raise NotImplementedError

    def _condition(self, r: torch.Tensor, sizes: torch.Tensor) -> ScaleCondition:
        return ScaleCondition(r)

    def _features(self, lr: torch.Tensor, cond: ScaleCondition) -> torch.Tensor:
        raise NotImplementedError

    def _render(self, feat: torch.Tensor, plan: RenderPlan) -> torch.Tensor:
        raise NotImplementedError

    def _resolve_plan(
        self,
        feat: torch.Tensor,
        *,
        scale: ScaleLike | None,
        size: tuple[int, int] | None,
        window: Window | None,
        plan: RenderPlan | None,
    ) -> RenderPlan:
        return resolve_plan(feat, scale=scale, size=size, window=window, plan=plan)
