"""FDAT (``spandrel.architectures.FDAT``): simplified dual-aggregation residual groups.

Layout: ``conv_first`` (a 3x3 conv, or for x1 / x2 models with ``unshuffle_mod`` a
pixel-unshuffle by ``pad`` = 4 / 2 then a conv: the features lie at stride ``pad``; the input
is first reflect-padded to a multiple of it), ``groups`` (an ``nn.Sequential`` of residual
groups), ``conv_after``, ``upsampler`` (UniUpsampleV3 with its ``MetaUpsample`` buffer, the
tail: conv, pixelshuffle(direct), nearest+conv, dysample, transpose+conv, lda or pa_up).

**Cut point**: the input of ``upsampler``, ``conv_after(groups(f)) + f`` with
``f = conv_first(x)`` (for every upsampler type: the whole upsampler is the tail). The
window attention pads and crops inside each block, so the map has the input's size (over the
stride).

**AFE blocks**: one before each residual group (every ``afe_every``-th with that setting).

Nothing follows the tail but the crop of the output: no global residual, no clamp (``mean``
and ``img_range`` exist on the model but its forward does not use them).
"""

from __future__ import annotations

import torch
from torch import nn

from ...ops.padding import pad_to_multiple
from ...scale import ScaleCondition
from .base import Adapter, interleave, run_body

__all__ = ["FDATAdapter"]


class FDATAdapter(Adapter):
    name = "fdat"
    family = "FDAT"
    architectures = ("FDAT",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        groups = getattr(model, "groups", None)
        up = getattr(model, "upsampler", None)
        return (
            isinstance(getattr(model, "conv_first", None), nn.Conv2d | nn.Sequential)
            and isinstance(getattr(model, "conv_after", None), nn.Conv2d)
            and isinstance(groups, nn.Sequential)
            and len(groups) > 0
            and all(
                isinstance(getattr(g, "blocks", None), nn.ModuleList)
                and isinstance(getattr(g, "conv", None), nn.Conv2d)
                for g in groups
            )
            and isinstance(up, nn.Sequential)
            and "MetaUpsample" in up._buffers
            and isinstance(getattr(model, "pad", None), int)
        )

    @staticmethod
    def _head_conv(backbone: nn.Module) -> nn.Conv2d:
        head = backbone.conv_first
        return (
            head
            if isinstance(head, nn.Conv2d)
            else next(m for m in head if isinstance(m, nn.Conv2d))
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(self._head_conv(model).out_channels)
        if settings["afe"] == "per_group":
            every = settings["afe_every"] or 1
            backbone.groups = interleave(model.groups, channels, every, len(model.groups))
        del backbone._modules["upsampler"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.upsampler

    def stride(self, backbone: nn.Module) -> int:
        return max(1, int(backbone.pad))

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d | None:
        return backbone.conv_first if isinstance(backbone.conv_first, nn.Conv2d) else None

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        s = self.stride(backbone)
        x = pad_to_multiple(lr, s) if s > 1 else lr  # reflect, as the network pads
        f = backbone.conv_first(x)
        return backbone.conv_after(run_body(backbone.groups, f, scale)) + f


ADAPTERS = (FDATAdapter,)
