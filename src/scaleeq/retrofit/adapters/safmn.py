"""SAFMN (``spandrel.architectures.SAFMN``): attention blocks over a conv head.

Layout: ``to_feat`` (3x3 conv), ``feats`` (an ``nn.Sequential`` of ``AttBlock``\\ s, each with
``safm`` and ``ccm``), ``to_img`` (conv + pixel shuffle, the tail).

**Cut point**: the input of ``to_img``, ``feats(f) + f`` with ``f = to_feat(x)``.

**AFE blocks**: the blocks are not grouped, so :func:`~.base.interleave`'s default applies
(one before every quarter of the blocks, or every ``afe_every`` blocks).

Nothing follows the tail: no global residual, no clamp, no padding.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Adapter, interleave, run_body

__all__ = ["SAFMNAdapter"]


class SAFMNAdapter(Adapter):
    name = "safmn"
    family = "SAFMN"
    architectures = ("SAFMN",)
    export_fixed_size = (
        "SAFMN pools to (h // 2**i, w // 2**i) with adaptive_max_pool2d, which ONNX has "
        "only as the traced sizes"
    )

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        feats = getattr(model, "feats", None)
        tail = getattr(model, "to_img", None)
        return (
            isinstance(getattr(model, "to_feat", None), nn.Conv2d)
            and isinstance(feats, nn.Sequential)
            and len(feats) > 0
            and all(hasattr(b, "safm") and hasattr(b, "ccm") for b in feats)
            and isinstance(tail, nn.Sequential)
            and any(isinstance(m, nn.PixelShuffle) for m in tail)
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(model.to_feat.out_channels)
        if settings["afe"] == "per_group":
            backbone.feats = interleave(
                model.feats, channels, settings["afe_every"], len(model.feats)
            )
        del backbone._modules["to_img"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.to_img

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.to_feat

    def features(self, backbone: nn.Module, lr: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        f = backbone.to_feat(lr)
        return run_body(backbone.feats, f, scale) + f


ADAPTERS = (SAFMNAdapter,)
