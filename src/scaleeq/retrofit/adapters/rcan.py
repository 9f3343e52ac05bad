"""RCAN as spandrel ships it (``spandrel.architectures.RCAN``).

EDSR-PyTorch's module names (``sub_mean``, ``head``, ``body``, ``tail``, ``add_mean``) with an
input in [0, 1] scaled by ``rgb_range`` inside the network, and for x1 / x2 models a
pixel-unshuffle front end (``head[0]``, factor ``downscale_factor``) after reflect padding to a
multiple of it: the features then lie at stride 2 or 4 over the input. spandrel's forward
scales its input *in place*; the adapter computes a new tensor instead, so the caller's input
is never modified.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..._checks import tracing
from ...ops.coords import pad_to
from .base import Adapter, interleave, run_body

__all__ = ["SpandrelRCANAdapter"]

_REQUIRED = ("sub_mean", "head", "body", "tail", "add_mean", "rgb_range", "downscale_factor")


class SpandrelRCANAdapter(Adapter):
    name = "rcan"
    family = "RCAN (spandrel)"
    architectures = ("RCAN",)

    @classmethod
    def matches(cls, model):
        return (
            all(hasattr(model, a) for a in _REQUIRED)
            and isinstance(model.body, nn.Sequential)
            and isinstance(model.head, nn.Sequential)
            and isinstance(model.body[-1], nn.Conv2d)
        )

    def _head_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return next(m for m in backbone.head if isinstance(m, nn.Conv2d))

    def input_conv(self, backbone):
        return None if int(backbone.downscale_factor) > 1 else self._head_conv(backbone)

    def build(self, model, backbone, settings):
        channels = self._head_conv(model).out_channels
        if settings["afe"] == "per_group":
            backbone.body = interleave(
                model.body, channels, settings["afe_every"], len(model.body) - 1
            )
        del backbone._modules["tail"]
        return channels

    def tail_module(self, model):
        return model.tail

    def stride(self, backbone):
        return int(backbone.downscale_factor)

    def features(self, backbone, lr, scale):
        s = int(backbone.downscale_factor)
        h, w = lr.shape[-2:]
        x = lr
        if s > 1 and (tracing() or h % s or w % s):  # (no branch on a symbolic size)
            x = F.pad(x, (0, pad_to(w, s), 0, pad_to(h, s)), mode="reflect")
        x = backbone.head(
            backbone.sub_mean(x * backbone.rgb_range)
        )  # a new tensor: lr is left as it was
        return run_body(backbone.body, x, scale) + x

    def output_range(self, backbone):
        return float(backbone.rgb_range)

    def output(self, backbone, out):
        return backbone.add_mean(out) / backbone.rgb_range


ADAPTERS = (SpandrelRCANAdapter,)
