"""Real-ESRGAN Compact (SRVGGNetCompact) as spandrel ships it (``spandrel.architectures.Compact``).

``body`` is an ``nn.ModuleList`` run in order: the first conv and its activation, ``num_conv``
pairs of conv + activation, and a last conv to ``out_ch * upscale**2`` channels; ``upsampler``
pixel-shuffles that, and the forward adds ``F.interpolate(x, scale_factor=upscale,
mode="nearest")`` of the input.

**Cut point:** the output of the last activation, the input of ``body[-1]`` (the last conv, the
first module of the tail). **AFE blocks** go before the conv + activation pairs (every
``afe_every``-th pair, default a quarter of them: 4 AFE blocks), never before the first conv
that reads the image. The backbone's ``body`` becomes an ``nn.Sequential`` of the first conv,
its activation and the (AFE-interleaved) pairs, sharing the input model's layers.

**Carried over:** the global nearest-upsampled input (``residual = "nearest"``: with
``skip="auto"`` the upsampler renders a residual over the nearest interpolation of the input at
every scale). The network maps no output range.
"""

from __future__ import annotations

import torch
from torch import nn

from ...scale import ScaleCondition
from .base import Adapter, interleave, run_body

__all__ = ["CompactAdapter"]


class CompactAdapter(Adapter):
    name = "compact"
    family = "Real-ESRGAN Compact (SRVGGNetCompact)"
    architectures = ("Compact",)
    residual = "nearest"

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        body = getattr(model, "body", None)
        num_conv = getattr(model, "num_conv", None)
        return (
            isinstance(body, nn.ModuleList)
            and isinstance(getattr(model, "upsampler", None), nn.PixelShuffle)
            and isinstance(num_conv, int)
            and hasattr(model, "num_feat")
            and len(body) == 2 * num_conv + 3
            and isinstance(body[0], nn.Conv2d)
            and isinstance(body[-1], nn.Conv2d)
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        layers = list(model.body)
        channels = int(layers[0].out_channels)
        # conv + activation pairs between the first activation and the last conv
        pairs = nn.Sequential(
            *(nn.Sequential(layers[i], layers[i + 1]) for i in range(2, len(layers) - 1, 2))
        )
        trunk: nn.Module = pairs
        if settings["afe"] == "per_group" and len(pairs):
            every = settings["afe_every"] or max(1, len(pairs) // 4)
            trunk = interleave(pairs, channels, every, len(pairs))
        backbone._modules["body"] = nn.Sequential(layers[0], layers[1], trunk)
        del backbone._modules["upsampler"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.body[-1]

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.body[0]

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        x = backbone.body[1](backbone.body[0](lr))  # a new tensor before any in-place activation
        return run_body(backbone.body[2], x, scale)


ADAPTERS = (CompactAdapter,)
