"""PLKSR and RealPLKSR as spandrel ships them (``spandrel.architectures.PLKSR``).

Both run ``feats``, an ``nn.Sequential`` of a conv reading the image, ``n_blocks`` PLK blocks
(channel mixer, partial large-kernel conv, element-wise attention, 1x1 refinement; RealPLKSR
adds a group norm or layer norm) and a last conv to ``3 * scale**2`` channels (RealPLKSR has a
``Dropout2d`` before it), add ``repeat_interleave(x, scale**2)`` of the input and render with
``to_img``: a pixel shuffle, or (RealPLKSR ``dysample=True``) a DySample upsampler.

**Cut point:** the output of the last PLK block: the input of ``feats[-1]`` (PLKSR) or of the
``Dropout2d`` ``feats[-2]`` (RealPLKSR). **AFE blocks** go before PLK blocks (every
``afe_every``-th, default a quarter of them: 4 AFE blocks), never before the first conv. The
backbone's ``feats`` becomes ``nn.Sequential(first conv, blocks)``, sharing the input model's
layers.

**Carried over:** with a pixel-shuffle ``to_img`` the repeated input, pixel-shuffled, is exactly
the nearest-upsampled input: ``residual = "nearest"`` (adapters ``plksr``, ``realplksr``).
With DySample (adapter ``realplksr_dysample``) the repeated input is resampled by DySample's
learned offsets and mixed by its end conv together with the features, so it is no separable
residual: ``residual = None`` (the upsampler renders the image). Not carried over: RealPLKSR's
training-time ``Dropout2d`` before the last conv (part of the dropped tail; spandrel builds it
with ``p = 0``).
"""

from __future__ import annotations

import torch
from torch import nn

from ...scale import ScaleCondition
from .base import Adapter, interleave, run_body

__all__ = ["PLKSRAdapter", "RealPLKSRAdapter", "RealPLKSRDySampleAdapter"]


def _plk_block(module: nn.Module, mixer: str) -> bool:
    """A PLK block with the channel mixer attribute ``mixer`` (PLKSR spells it
    ``channe_mixer``, RealPLKSR ``channel_mixer``)."""
    return all(isinstance(getattr(module, a, None), nn.Module) for a in (mixer, "lk", "refine"))


class _PLKBase(Adapter):
    """Shared structure: ``feats`` = first conv, PLK blocks, ``_tail_len`` tail layers."""

    _mixer: str = ""
    _tail_len: int = 1

    @classmethod
    def _feats_match(cls, model: nn.Module) -> bool:
        feats = getattr(model, "feats", None)
        return (
            isinstance(feats, nn.Sequential)
            and len(feats) >= 2 + cls._tail_len
            and isinstance(feats[0], nn.Conv2d)
            and isinstance(feats[-1], nn.Conv2d)
            and _plk_block(feats[1], cls._mixer)
            and isinstance(getattr(model, "to_img", None), nn.Module)
            and hasattr(model, "repeat_op")
        )

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return cls._feats_match(model) and isinstance(model.to_img, nn.PixelShuffle)

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        layers = list(model.feats)
        head = layers[0]
        blocks = nn.Sequential(*layers[1 : len(layers) - self._tail_len])
        channels = int(head.out_channels)
        trunk: nn.Module = blocks
        if settings["afe"] == "per_group":
            every = settings["afe_every"] or max(1, len(blocks) // 4)
            trunk = interleave(blocks, channels, every, len(blocks))
        backbone._modules["feats"] = nn.Sequential(head, trunk)
        del backbone._modules["to_img"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.feats[len(model.feats) - self._tail_len]

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.feats[0]

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        return run_body(backbone.feats[1], backbone.feats[0](lr), scale)


class PLKSRAdapter(_PLKBase):
    name = "plksr"
    family = "PLKSR"
    architectures = ("PLKSR",)
    residual = "nearest"
    _mixer = "channe_mixer"
    _tail_len = 1


class RealPLKSRAdapter(_PLKBase):
    name = "realplksr"
    family = "RealPLKSR"
    architectures = ("PLKSR",)
    residual = "nearest"
    _mixer = "channel_mixer"
    _tail_len = 2  # Dropout2d, last conv


class RealPLKSRDySampleAdapter(RealPLKSRAdapter):
    name = "realplksr_dysample"
    family = "RealPLKSR (DySample)"
    residual = None

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return cls._feats_match(model) and hasattr(model.to_img, "init_pos")


ADAPTERS = (PLKSRAdapter, RealPLKSRAdapter, RealPLKSRDySampleAdapter)
