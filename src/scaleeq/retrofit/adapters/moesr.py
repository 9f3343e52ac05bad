"""MoESR (``spandrel.architectures.MoESR``): gated-CNN groups over a conv head.

Layout: ``in_to_dim`` (3x3 conv), ``blocks`` (an ``nn.Sequential`` of groups, each gated CNN
``blocks`` then an ``msg`` multi-scale stage), ``upscale`` (UniUpsample with its
``MetaUpsample`` buffer, the tail: conv, pixelshuffledirect, pixelshuffle, nearest+conv or
dysample). The forward reflect-pads the input to a multiple of 2 (the MSG stages unshuffle
by 2).

**Cut point**: the input of ``upscale``, ``blocks(f) + f`` with ``f = in_to_dim(x)``, on the
padded map; the adapter crops it back to the input's ``h x w`` (the network crops its output
after the tail).

**AFE blocks**: one before each group (every ``afe_every``-th with that setting).

Nothing follows the tail except the crop: no global residual, no clamp.
"""

from __future__ import annotations

import torch
from torch import nn

from ...ops.padding import crop_padding, pad_to_multiple
from ...scale import ScaleCondition
from .base import Adapter, interleave, run_body

__all__ = ["MoESRAdapter"]


class MoESRAdapter(Adapter):
    name = "moesr"
    family = "MoESR"
    architectures = ("MoESR",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        body = getattr(model, "blocks", None)
        up = getattr(model, "upscale", None)
        return (
            isinstance(getattr(model, "in_to_dim", None), nn.Conv2d)
            and isinstance(body, nn.Sequential)
            and len(body) > 0
            and all(
                isinstance(getattr(g, "blocks", None), nn.Sequential) and hasattr(g, "msg")
                for g in body
            )
            and isinstance(up, nn.Sequential)
            and "MetaUpsample" in up._buffers
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(model.in_to_dim.out_channels)
        if settings["afe"] == "per_group":
            every = settings["afe_every"] or 1
            backbone.blocks = interleave(model.blocks, channels, every, len(model.blocks))
        del backbone._modules["upscale"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.upscale

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.in_to_dim

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        h, w = lr.shape[-2:]
        f = backbone.in_to_dim(pad_to_multiple(lr, 2))  # reflect, as the network pads
        return crop_padding(run_body(backbone.blocks, f, scale) + f, (h, w))


ADAPTERS = (MoESRAdapter,)
