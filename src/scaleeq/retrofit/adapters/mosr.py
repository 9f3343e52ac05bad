"""MoSR (MambaOut super-resolution) as spandrel ships it (``spandrel.architectures.MoSR``).

``gblocks`` is an ``nn.Sequential`` of a conv reading the image, ``n_block`` gated CNN blocks
and a conv / Mish / conv / Mish / 1x1 conv stack; ``shortcut`` is a conv block on the input.
The forward renders ``gblocks(x) + (shortcut(x) - 0.5)`` with ``upsampler``: conv + pixel
shuffle (``"ps"``), the geometric-ensemble pixel shuffle (``"gps"``) or DySample (``"dys"``).

**Cut point:** ``gblocks(x) + shortcut(x) - 0.5``, the input of ``upsampler`` (all three
variants). **AFE blocks** go before gated CNN blocks (every ``afe_every``-th, default a quarter
of them: 4 AFE blocks), never before the first conv nor inside the closing conv stack. The
backbone's ``gblocks`` becomes ``nn.Sequential(first conv, blocks and closing stack)``, sharing
the input model's layers.

Not carried over: nothing; the network adds no global residual after its upsampler and maps no
output range (the ``- 0.5`` shift lies before the cut and is part of the features).
"""

from __future__ import annotations

import torch
from torch import nn

from ...scale import ScaleCondition
from .base import Adapter, interleave, run_body

__all__ = ["MoSRAdapter"]


def _gated_block(module: nn.Module) -> bool:
    return all(
        isinstance(getattr(module, a, None), nn.Module) for a in ("norm", "fc1", "conv", "fc2")
    )


class MoSRAdapter(Adapter):
    name = "mosr"
    family = "MoSR"
    architectures = ("MoSR",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        g = getattr(model, "gblocks", None)
        return (
            isinstance(g, nn.Sequential)
            and len(g) >= 7
            and isinstance(g[0], nn.Conv2d)
            and _gated_block(g[1])
            and isinstance(getattr(model, "shortcut", None), nn.Module)
            and isinstance(getattr(model, "upsampler", None), nn.Module)
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        layers = list(model.gblocks)
        head = layers[0]
        rest = nn.Sequential(*layers[1:])
        n_blocks = sum(1 for m in layers[1:] if _gated_block(m))
        channels = int(head.out_channels)
        trunk: nn.Module = rest
        if settings["afe"] == "per_group" and n_blocks:
            every = settings["afe_every"] or max(1, n_blocks // 4)
            trunk = interleave(rest, channels, every, n_blocks)
        backbone._modules["gblocks"] = nn.Sequential(head, trunk)
        del backbone._modules["upsampler"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.upsampler

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.gblocks[0]

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        x = run_body(backbone.gblocks[1], backbone.gblocks[0](lr), scale)
        return x + (backbone.shortcut(lr) - 0.5)


ADAPTERS = (MoSRAdapter,)
