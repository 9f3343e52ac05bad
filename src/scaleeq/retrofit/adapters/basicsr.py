"""EDSR and RCAN in BasicSR's layout (and :mod:`scaleeq.models`).

``mean``, ``img_range``, ``conv_first``, ``body`` (an ``nn.Sequential`` of blocks or residual
groups), ``conv_after_body``, ``upsample``, ``conv_last``; features
``conv_after_body(body(x)) + x`` with ``x = conv_first((lr - mean) * img_range)``. (BasicSR
itself does not install beside current torchvision: its 1.4.2 release imports
``torchvision.transforms.functional_tensor``, removed in torchvision 0.17; tests use stand-ins
checked against its key names and forward.)
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Adapter, interleave, out_channels, run_body

__all__ = ["TAIL_MODULES", "BasicSRAdapter", "MeanRangeAdapter"]

_REQUIRED = ("conv_first", "body", "conv_after_body", "upsample", "conv_last", "mean", "img_range")


#: Every module name of BasicSR's upsampling tails, as SwinIR, HAT, DAT, ATD and GRL build
#: them: ``pixelshuffle`` (``conv_before_upsample``, ``upsample``, ``conv_last``),
#: ``pixelshuffledirect`` (``upsample``) and ``nearest+conv`` (``conv_before_upsample``,
#: ``conv_up1``, ``conv_up2`` [, ``conv_up3``], ``conv_hr``, ``lrelu``, ``conv_last``).
TAIL_MODULES = (
    "conv_before_upsample",
    "upsample",
    "conv_last",
    "conv_up1",
    "conv_up2",
    "conv_up3",
    "conv_hr",
    "lrelu",
)


class MeanRangeAdapter(Adapter):
    """Networks that map ``(lr - mean) * img_range`` through ``conv_first`` and undo it on the
    output (BasicSR EDSR/RCAN, SwinIR / HAT and their relatives), with one of BasicSR's
    upsampling tails (:data:`TAIL_MODULES`)."""

    @staticmethod
    def drop_tail(backbone: nn.Module) -> None:
        """Remove every :data:`TAIL_MODULES` module ``backbone`` has (in place)."""
        for name in TAIL_MODULES:
            backbone._modules.pop(name, None)

    def tail_module(self, model: nn.Module) -> nn.Module | None:
        """The tail's first module: ``conv_before_upsample`` where there is one, else
        ``upsample`` (the cut is its input)."""
        for name in ("conv_before_upsample", "upsample"):
            if isinstance(getattr(model, name, None), nn.Module):
                return getattr(model, name)
        return None

    def input_conv(self, backbone):
        return backbone.conv_first

    def output_range(self, backbone):
        return float(backbone.img_range)

    def output(self, backbone, out):
        return out / backbone.img_range + torch.as_tensor(backbone.mean).to(out)


class BasicSRAdapter(MeanRangeAdapter):
    name = "basicsr"
    family = "EDSR / RCAN (BasicSR layout)"

    @classmethod
    def matches(cls, model):
        return all(hasattr(model, a) for a in _REQUIRED) and isinstance(model.body, nn.Sequential)

    def build(self, model, backbone, settings):
        channels = out_channels(model.conv_after_body)
        if settings["afe"] == "per_group":
            backbone.body = interleave(model.body, channels, settings["afe_every"], len(model.body))
        self.drop_tail(backbone)
        return channels

    def features(self, backbone, lr, scale):
        x = backbone.conv_first((lr - torch.as_tensor(backbone.mean).to(lr)) * backbone.img_range)
        return backbone.conv_after_body(run_body(backbone.body, x, scale)) + x


ADAPTERS = (BasicSRAdapter,)
