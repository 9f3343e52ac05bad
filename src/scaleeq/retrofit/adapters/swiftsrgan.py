"""Swift-SRGAN's generator as spandrel ships it (``spandrel.architectures.SwiftSRGAN``).

``initial`` (a separable 9x9 conv block reading the image), ``residual`` (an ``nn.Sequential``
of residual blocks), ``convblock`` (separable conv + batch norm) added to ``initial``'s output,
then the tail: ``upsampler`` (separable conv + pixel shuffle + PReLU per x2 step) and
``final_conv``, whose output is mapped by ``(tanh(.) + 1) / 2``.

**Cut point:** ``convblock(residual(initial(x))) + initial(x)``, the input of ``upsampler``.
**AFE blocks** go before residual blocks (every ``afe_every``-th, default a quarter of them:
4 AFE blocks).

**Carried over:** the ``(tanh(.) + 1) / 2`` output map (:meth:`SwiftSRGANAdapter.output`), which
keeps the output in (0, 1) like the network's; the upsampler renders the pre-``tanh`` value.
Near zero the map has slope 1/2, so :meth:`~SwiftSRGANAdapter.output_range` is 2 (an explicit
interpolation skip then adds ``out / 2``). The network adds no global residual. The body's
batch norms are the input model's: training the retrofit in train mode updates their running
statistics, as training the network itself would.
"""

from __future__ import annotations

import torch
from torch import nn

from ...scale import ScaleCondition
from .base import Adapter, interleave, run_body

__all__ = ["SwiftSRGANAdapter"]


class SwiftSRGANAdapter(Adapter):
    name = "swiftsrgan"
    family = "Swift-SRGAN"
    architectures = ("SwiftSRGAN",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        initial = getattr(model, "initial", None)
        final = getattr(model, "final_conv", None)
        return (
            isinstance(getattr(model, "residual", None), nn.Sequential)
            and isinstance(getattr(model, "upsampler", None), nn.Sequential)
            and isinstance(getattr(model, "convblock", None), nn.Module)
            and isinstance(getattr(getattr(initial, "cnn", None), "depthwise", None), nn.Conv2d)
            and isinstance(getattr(final, "pointwise", None), nn.Conv2d)
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(model.initial.cnn.pointwise.out_channels)
        if settings["afe"] == "per_group" and len(model.residual):
            n = len(model.residual)
            every = settings["afe_every"] or max(1, n // 4)
            backbone._modules["residual"] = interleave(model.residual, channels, every, n)
        for name in ("upsampler", "final_conv"):
            del backbone._modules[name]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.upsampler

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.initial.cnn.depthwise

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        initial = backbone.initial(lr)
        return backbone.convblock(run_body(backbone.residual, initial, scale)) + initial

    def output_range(self, backbone: nn.Module) -> float:
        return 2.0

    def output(self, backbone: nn.Module, out: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(out) + 1) / 2


ADAPTERS = (SwiftSRGANAdapter,)
