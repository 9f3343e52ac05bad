"""EDSR and RCAN as in the original EDSR-PyTorch code (no installable package: tests use a
stand-in checked against that code's key names and forward).

``sub_mean``, ``head``, ``body`` (blocks or groups, then a conv), ``tail``, ``add_mean``; input
in ``[0, pixel_range]`` (inferred from ``sub_mean``, 255 by default).
"""

from __future__ import annotations

import torch
from torch import nn

from ...models._common import RGB_MEAN
from .base import Adapter, interleave, out_channels, run_body

__all__ = ["EDSRPyTorchAdapter"]

_REQUIRED = ("sub_mean", "head", "body", "tail", "add_mean")


class EDSRPyTorchAdapter(Adapter):
    name = "edsr_pytorch"
    family = "EDSR / RCAN (EDSR-PyTorch layout)"

    @classmethod
    def matches(cls, model):
        # spandrel's RCAN has these names too but takes [0, 1] input (adapters/rcan.py)
        return cls.fits(model) and not hasattr(model, "downscale_factor")

    @classmethod
    def fits(cls, model):
        """The structure this adapter runs on. Files written before spandrel's RCAN had its
        own adapter stored this layout for it (the same features and output: its
        ``pixel_range`` is read from ``sub_mean``) and keep loading with it."""
        return all(hasattr(model, a) for a in _REQUIRED) and isinstance(model.body, nn.Sequential)

    def input_conv(self, backbone):
        return backbone.sub_mean if isinstance(backbone.sub_mean, nn.Conv2d) else None

    def build(self, model, backbone, settings):
        channels = out_channels(model.head)
        pr = settings["pixel_range"]
        self.pixel_range = float(pr) if pr is not None else infer_pixel_range(model)
        n = len(model.body) - 1 if isinstance(model.body[-1], nn.Conv2d) else len(model.body)
        if settings["afe"] == "per_group":
            backbone.body = interleave(model.body, channels, settings["afe_every"], n)
        del backbone._modules["tail"]
        return channels

    def tail_module(self, model):
        return model.tail

    def model_input(self, model, x):
        if hasattr(model, "downscale_factor"):  # spandrel's RCAN scales [0, 1] itself
            return x
        return x * self.pixel_range

    def features(self, backbone, lr, scale):
        x = backbone.head(backbone.sub_mean(lr * self.pixel_range))
        return run_body(backbone.body, x, scale) + x

    def output_range(self, backbone):
        return float(self.pixel_range)

    def output(self, backbone, out):
        return backbone.add_mean(out) / self.pixel_range


def infer_pixel_range(model: nn.Module) -> float:
    """EDSR-PyTorch's ``sub_mean`` is a 1x1 conv with bias ``-pixel_range * mean / std``."""
    bias = getattr(model.sub_mean, "bias", None)
    weight = getattr(model.sub_mean, "weight", None)
    if bias is None or weight is None or bias.numel() != 3:
        return 255.0
    std = 1.0 / weight.detach().flatten(1).diagonal()[:3].abs().clamp_min(1e-12)
    mean = torch.tensor(RGB_MEAN)
    ratio = -bias.detach().cpu().float() * std.cpu().float() / mean
    value = float(ratio.mean())
    return value if value > 0 and bool((ratio - value).abs().max() < 1e-3 * value) else 255.0


ADAPTERS = (EDSRPyTorchAdapter,)
