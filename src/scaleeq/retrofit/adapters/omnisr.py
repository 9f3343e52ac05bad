"""OmniSR (``spandrel.architectures.OmniSR``): OSAG groups over a conv head.

Layout: ``input`` (3x3 conv), ``residual_layer`` (an ``nn.Sequential`` of OSAG groups, each
OSA blocks + a 1x1 conv + ESA), ``output`` (3x3 conv), ``up`` (conv + pixel shuffle, the
tail), ``window_size``. The forward zero-pads the input to a multiple of ``window_size``.

**Cut point**: the input of ``up``, ``output(residual_layer(f)) + f`` with ``f = input(x)``,
on the padded map; the adapter crops it back to the input's ``h x w`` (the network itself
crops its output after the tail, so the top-left features are the same).

**AFE blocks**: one before each OSAG group (:func:`~.base.interleave`).

Nothing follows the tail except the crop: no global residual, no clamp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..._checks import tracing
from ...ops.coords import ceil_div, pad_to
from ...ops.padding import crop_padding
from ...scale import ScaleCondition
from .base import Adapter, interleave, run_body

__all__ = ["OmniSRAdapter", "zero_pad_to_multiple"]


def zero_pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``(B, C, H, W)`` at the bottom / right to multiples of ``multiple`` (as
    ``F.pad(..., mode="constant")``). While compiling / exporting, the padding is an index gather
    times a mask, so that the padded size is visibly ``multiple * ceil(n / multiple)`` and no
    branch depends on a symbolic size."""
    h, w = x.shape[-2:]
    if not tracing():
        if h % multiple == 0 and w % multiple == 0:
            return x
        return F.pad(x, (0, pad_to(w, multiple), 0, pad_to(h, multiple)))
    for dim, n in ((-2, h), (-1, w)):
        i = torch.arange(multiple * ((n + multiple - 1) // multiple), device=x.device)
        keep = (i < n).to(x.dtype)
        x = x.index_select(dim, i.clamp(max=n - 1))
        x = x * (keep[:, None] if dim == -2 else keep)
    return x


class OmniSRAdapter(Adapter):
    name = "omnisr"
    family = "OmniSR"
    architectures = ("OmniSR",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        body = getattr(model, "residual_layer", None)
        up = getattr(model, "up", None)
        return (
            isinstance(getattr(model, "input", None), nn.Conv2d)
            and isinstance(getattr(model, "output", None), nn.Conv2d)
            and isinstance(body, nn.Sequential)
            and len(body) > 0
            and all(
                hasattr(g, "esa") and isinstance(getattr(g, "residual_layer", None), nn.Sequential)
                for g in body
            )
            and isinstance(up, nn.Sequential)
            and any(isinstance(m, nn.PixelShuffle) for m in up)
            and isinstance(getattr(model, "window_size", None), int)
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(model.input.out_channels)
        if settings["afe"] == "per_group":
            every = settings["afe_every"] or 1
            backbone.residual_layer = interleave(
                model.residual_layer, channels, every, len(model.residual_layer)
            )
        del backbone._modules["up"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.up

    def probe_size(self, model: nn.Module) -> tuple[int, int]:
        ws = int(model.window_size)
        n = ws * ceil_div(16, ws)  # a multiple of the window (no padding), >= 16 for ESA's pooling
        return (n, n)

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.input

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        h, w = lr.shape[-2:]
        x = zero_pad_to_multiple(lr, int(backbone.window_size))
        f = backbone.input(x)
        out = backbone.output(run_body(backbone.residual_layer, f, scale)) + f
        return crop_padding(out, (h, w))


ADAPTERS = (OmniSRAdapter,)
