"""SeemoRe (``spandrel.architectures.SeemoRe``): mixture-of-experts residual groups.

Layout: ``mean`` (a plain tensor attribute, not a buffer), ``img_range``, ``conv_1`` (3x3
conv), ``body`` (an ``nn.ModuleList`` of ResGroups, each ``local_block`` + ``global_block``),
``norm`` (channels-first LayerNorm), ``conv_2``, ``upsampler`` (conv + pixel shuffle, the
tail). The forward maps the input to ``(x - mean) * img_range`` and the output back with
``out / img_range + mean``; the adapter's :meth:`~SeemoReAdapter.output` does the same.

**Cut point**: the input of ``upsampler``, ``conv_2(norm(body(f))) + f`` with
``f = conv_1((x - mean) * img_range)``.

**AFE blocks**: one before each ResGroup (every ``afe_every``-th with that setting).

No global residual, no clamp. In eval mode spandrel's MoE layer picks its experts with a
Python loop over ``topk`` indices of the (batch-1) routing weights, as the network does.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Adapter, interleave, run_body

__all__ = ["SeemoReAdapter"]


class SeemoReAdapter(Adapter):
    name = "seemore"
    family = "SeemoRe"
    architectures = ("SeemoRe",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        body = getattr(model, "body", None)
        return (
            isinstance(getattr(model, "conv_1", None), nn.Conv2d)
            and isinstance(getattr(model, "conv_2", None), nn.Conv2d)
            and isinstance(getattr(model, "norm", None), nn.Module)
            and isinstance(getattr(model, "upsampler", None), nn.Sequential)
            and isinstance(body, nn.ModuleList)
            and len(body) > 0
            and all(hasattr(g, "local_block") and hasattr(g, "global_block") for g in body)
            and hasattr(model, "mean")
            and hasattr(model, "img_range")
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(model.conv_1.out_channels)
        if settings["afe"] == "per_group":
            every = settings["afe_every"] or 1
            backbone.body = interleave(model.body, channels, every, len(model.body))
        del backbone._modules["upsampler"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.upsampler

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.conv_1

    def features(self, backbone: nn.Module, lr: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        f = backbone.conv_1((lr - torch.as_tensor(backbone.mean).to(lr)) * backbone.img_range)
        body = backbone.body
        if isinstance(body, nn.ModuleList):  # afe="none": the groups in order
            x = f
            for group in body:
                x = group(x)
        else:
            x = run_body(body, f, scale)
        return backbone.conv_2(backbone.norm(x)) + f

    def output_range(self, backbone: nn.Module) -> float:
        return float(backbone.img_range)

    def output(self, backbone: nn.Module, out: torch.Tensor) -> torch.Tensor:
        return out / backbone.img_range + torch.as_tensor(backbone.mean).to(out)


ADAPTERS = (SeemoReAdapter,)
