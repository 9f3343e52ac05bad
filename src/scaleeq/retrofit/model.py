"""``ArbitraryScaleSR``: a retrofitted network (shared body + AFE blocks + an upsampler)."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_channels, check_matching, check_tensor, tracing
from ..arbitrary import ArbitraryScaleModel
from ..geometry import RenderPlan, render_plan
from ..ops.coords import Window, pad_to
from ..sampling import sample_image
from ..scale import ScaleCondition, ScaleLike
from .adapters.base import Adapter

__all__ = ["ArbitraryScaleSR"]


class ArbitraryScaleSR(ArbitraryScaleModel):
    """A retrofitted model: shared head and body + AFE blocks + an arbitrary-scale upsampler.

    Built by :func:`~scaleeq.retrofit` (or :func:`~scaleeq.load`); not meant to be constructed
    directly.

    **How the scale flows.** ``forward`` makes one :class:`~scaleeq.geometry.RenderPlan` per
    call; its ``scale`` (the requested ``r``, ``(N, 2)`` float64; ``(H / h, W / w)`` when only
    ``size`` is given) is handed as an argument to every AFE block (:meth:`features`), and the
    same plan drives the upsampler and the bicubic skip (:meth:`render`). No hidden state:
    activation checkpointing, ``torch.compile`` and exporters see the scale as an input.
    ``features``, ``render`` and ``forward`` are :class:`~scaleeq.arbitrary.ArbitraryScaleModel`'s
    (the skeleton EQSR shares).

    ``features(lr, scale)``: the body's features ``(B, C, h, w)`` that the upsampler renders
    from, equal to the original model's pre-tail features while the AFE blocks are at their
    identity initialisation; ``(B, C, ceil(h / s), ceil(w / s))`` at :attr:`stride` ``s``. With
    a skip the input is appended as ``3 s^2`` channels (pixel-unshuffled at stride ``s``, after
    reflect padding to a multiple of ``s``).

    ``render(feat, *, scale=None, size=None, window=None, plan=None)``: the upsampler's output
    for ``feat`` with the original model's output transform applied (``/ img_range + mean`` for
    BasicSR and Swin layouts, ``add_mean`` for EDSR-PyTorch). With a skip (``"bicubic"``,
    ``"bilinear"``, ``"nearest"``) the last channels of ``feat`` are the input image: the
    upsampler's output (scaled back to [0, 1] units, no mean) is added to that interpolation of
    the image at the same HR queries. At :attr:`stride` ``s > 1``, ``plan`` is the plan of the
    *input image* (as ``forward`` and :func:`~scaleeq.upscale` make it); given ``scale`` /
    ``size`` instead, the image is taken to be ``s`` times the feature map.

    Shape:
        - lr: :math:`(B, 3, h, w)` in the input range of the original model ([0, 1] for BasicSR
          and Swin layouts; EDSR-PyTorch models also take [0, 1] here: the wrapper scales).
        - scale / size / window: as :class:`~scaleeq.NeuralKrigingUpsampler`; or ``plan=``.
        - output: :math:`(B, 3, H, W)` or the window.
    """

    def __init__(
        self,
        backbone: nn.Module,
        upsampler: nn.Module,
        *,
        adapter: Adapter,
        settings: dict[str, Any],
        base: dict[str, Any],
        skip: str = "none",
        source: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.skip = skip
        # the original network when it came from spandrel: save() stores its tail's weights so
        # that load() can rebuild it with spandrel's loader (not a submodule: no state-dict keys)
        self.__dict__["source"] = source
        self.backbone = backbone
        self.upsampler = upsampler
        self.adapter = adapter
        self.settings = settings
        self.base = base

    @property
    def layout(self) -> str:
        """The recognised layout: ``"basicsr"``, ``"edsr_pytorch"``, ``"swin"`` or ``"custom"``."""
        return self.adapter.name

    @property
    def stride(self) -> int:
        """The feature map's stride over the input (2 or 4 behind a pixel-unshuffle front end,
        else 1): :meth:`features` returns ``ceil(h / stride)`` rows, and the render reads them
        at that stride so the output still follows the input image."""
        return self.adapter.stride(self.backbone)

    @property
    def pixel_range(self) -> float:
        """Input range of the original network (255 for EDSR-PyTorch models, else 1)."""
        return self.adapter.pixel_range

    # -- the hooks of ArbitraryScaleModel ------------------------------------------------------
    def _check_lr(self, lr: torch.Tensor) -> None:
        check_tensor(lr, "lr", ndim=4, layout="(B, C, h, w)")
        first = self.adapter.input_conv(self.backbone)
        if first is not None:
            check_channels(lr, "lr", first.in_channels)
            check_matching(lr, "lr", first.weight)
        else:
            param = next(self.upsampler.parameters(), None)
            if param is not None:
                check_matching(lr, "lr", param)

    def _features(self, lr: torch.Tensor, cond: ScaleCondition) -> torch.Tensor:
        """:meth:`features` of a checked ``lr`` at a parsed condition (the plan's scale)."""
        feat = self.adapter.features(self.backbone, lr, cond)
        if self.skip != "none":  # carry the image along for the skip (see render)
            feat = torch.cat([feat, _fold(lr, self.stride)], dim=1)
        return feat

    def _resolve_plan(
        self,
        feat: torch.Tensor,
        *,
        scale: ScaleLike | None,
        size: tuple[int, int] | None,
        window: Window | None,
        plan: RenderPlan | None,
    ) -> RenderPlan:
        """The plan of the input image: at :attr:`stride` ``s > 1``, ``plan`` itself (checked
        against ``feat`` at that stride) or one made for an image ``s`` times ``feat``."""
        s = self.stride
        if s == 1:
            return super()._resolve_plan(feat, scale=scale, size=size, window=window, plan=plan)
        if plan is None:
            image = (feat.shape[-2] * s, feat.shape[-1] * s)
            plan = render_plan(image, feat.shape[0], scale=scale, size=size, window=window)
        elif not isinstance(plan, RenderPlan):
            raise TypeError(
                f"plan must be a scaleeq.geometry.RenderPlan, got {type(plan).__name__}"
            )
        elif scale is not None or size is not None or window is not None:
            raise TypeError("give either plan= or scale= / size= / window=, not both")
        plan.at_stride((s, s)).check_input(feat, "feat")
        return plan

    def _render(self, feat: torch.Tensor, plan: RenderPlan) -> torch.Tensor:
        """:meth:`render` of ``feat`` from :meth:`features` with the plan of its input."""
        s = self.stride
        fplan = plan.at_stride((s, s))  # the plan itself at stride 1
        if self.skip != "none":
            k = 3 * s * s
            feat, img = feat[:, :-k], _unfold(feat[:, -k:], s, plan.lr_size)
            out = self.upsampler(feat, plan=fplan)
            skip = sample_image(img, plan, self.skip)
            return out / self.adapter.output_range(self.backbone) + skip
        return self.adapter.output(self.backbone, self.upsampler(feat, plan=fplan))

    # -- training -----------------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True, *, use_reentrant: bool = False) -> int:
        """Run each AFE-carrying segment (an AFE block and each body block; a Swin/HAT residual
        group with its AFE block) under ``torch.utils.checkpoint`` while training.

        The scale is an argument of every segment, so recomputation in the backward pass sees
        the same value. State-dict keys do not change.

        Returns:
            The number of segment containers switched (0 with ``afe="none"``).
        """
        mode = None if not enable else ("reentrant" if use_reentrant else "non_reentrant")
        return self.adapter.set_checkpointing(self.backbone, mode)

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> None:
        """Write weights and the configuration needed to rebuild, atomically.

        Uses safetensors for ``.safetensors`` paths (needs the safetensors package), else
        ``torch.save``. The file appears complete or not at all. ``dtype`` (e.g.
        ``torch.float16``) stores floating tensors at that precision (half the size);
        :func:`~scaleeq.load` casts them back to the model's dtype.

        Raises:
            TypeError: the upsampler has no ``config`` to rebuild it from.
            ValueError: ``path`` is a directory or its folder does not exist.
        """
        from .format import save

        save(self, path, dtype=dtype)


def _fold(img: torch.Tensor, s: int) -> torch.Tensor:
    """``img`` on a stride-``s`` grid: reflect-padded to a multiple of ``s`` and
    pixel-unshuffled (``(B, 3 s^2, ceil(h / s), ceil(w / s))``; ``img`` itself at ``s = 1``)."""
    if s == 1:
        return img
    h, w = img.shape[-2:]
    if tracing() or h % s or w % s:  # (no branch on a symbolic size)
        mode = "reflect" if min(h, w) > s else "replicate"
        img = F.pad(img, (0, pad_to(w, s), 0, pad_to(h, s)), mode=mode)
    return F.pixel_unshuffle(img, s)


def _unfold(folded: torch.Tensor, s: int, size: tuple[int, int]) -> torch.Tensor:
    """The image of size ``size`` back from :func:`_fold`."""
    if s == 1:
        return folded
    return F.pixel_shuffle(folded, s)[:, :, : size[0], : size[1]]
