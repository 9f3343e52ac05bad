"""DCTLSA (``spandrel.architectures.DCTLSA``): six densely connected LSAB groups.

Layout: ``fea_conv`` (3x3 conv), ``B1`` ... ``B6`` (LSAB groups of Swin layers, each padding
its input to its window internally and cropping back), the 1x1 fusions ``c1`` ... ``c5`` over
the concatenated outputs so far and ``c`` over all six group outputs, ``LR_conv``,
``upsampler`` (conv + pixel shuffle, the tail).

**Cut point**: the input of ``upsampler``, ``LR_conv(c(cat(B1..B6))) + fea_conv(x)``, at the
input's resolution (the groups crop their own padding).

**AFE blocks**: one before each group ``B<i>`` (every ``afe_every``-th with that setting),
applied to the group's input only: the dense concatenations keep the un-modulated tensors, as
the network's own wiring does. :class:`AFEThen` runs them with the scale.

Nothing follows the tail: no global residual, no clamp.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._activation_checkpoint import maybe_checkpoint
from ...layers.afe import AFEBlock
from ...scale import ScaleCondition
from .base import Adapter

__all__ = ["AFEThen", "DCTLSAAdapter"]

_GROUPS = tuple(f"B{i}" for i in range(1, 7))
_FUSIONS = ("c1", "c2", "c3", "c4", "c5")


class AFEThen(nn.Module):
    """An NCHW block (shared, unchanged) preceded by an identity-at-init AFE block;
    ``forward(x, scale)``.

    With ``checkpointing`` set (``"reentrant"`` / ``"non_reentrant"``), the AFE block and the
    block each run under activation checkpointing while gradients are enabled.
    """

    def __init__(self, afe: AFEBlock, block: nn.Module) -> None:
        super().__init__()
        self.afe = afe
        self.block = block
        self.checkpointing: str | None = None

    def forward(self, x: torch.Tensor, scale: ScaleCondition) -> torch.Tensor:
        x = maybe_checkpoint(self.afe, x, scale, mode=self.checkpointing)
        return maybe_checkpoint(self.block, x, mode=self.checkpointing)


def _run(block: nn.Module, x: torch.Tensor, scale: ScaleCondition) -> torch.Tensor:
    return block(x, scale) if isinstance(block, AFEThen) else block(x)


class DCTLSAAdapter(Adapter):
    name = "dctlsa"
    export_batch = 1  # its window attention computes the batch from sizes
    _WINDOW = 16  # spandrel's DCTLSA fixes its Swin window at 16

    def export_trace_size(self, backbone: nn.Module) -> tuple[int, int]:
        # traced inside one window, the graph keeps a window count of 1 (a Reshape error in
        # onnxruntime at larger sizes); across 2 x 2 windows it holds at 1, 4 and 9 windows
        return (self._WINDOW + 3, self._WINDOW + 5)

    family = "DCTLSA"
    architectures = ("DCTLSA",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        names = ("fea_conv", "LR_conv", "upsampler", "c", *_GROUPS, *_FUSIONS)
        return (
            all(isinstance(getattr(model, n, None), nn.Module) for n in names)
            and isinstance(model.fea_conv, nn.Conv2d)
            and isinstance(model.LR_conv, nn.Conv2d)
            and all(
                isinstance(getattr(getattr(model, g), "body", None), nn.Sequential) for g in _GROUPS
            )
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(model.fea_conv.out_channels)
        if settings["afe"] == "per_group":
            every = settings["afe_every"] or 1
            for i, g in enumerate(_GROUPS):
                if i % every == 0:
                    backbone._modules[g] = AFEThen(
                        AFEBlock(channels, identity_init=True), getattr(model, g)
                    )
        del backbone._modules["upsampler"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.upsampler

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.fea_conv

    def set_checkpointing(self, backbone: nn.Module, mode: str | None) -> int:
        count = super().set_checkpointing(backbone, mode)
        for m in backbone.modules():
            if isinstance(m, AFEThen):
                m.checkpointing = mode
                count += 1
        return count

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        head = backbone.fea_conv(lr)
        dense = head  # the concatenation of the head and the group outputs so far
        x = head
        outs: list[torch.Tensor] = []
        for i, g in enumerate(_GROUPS):
            out = _run(getattr(backbone, g), x, scale)
            outs.append(out)
            if i < len(_FUSIONS):
                dense = torch.cat([dense, out], dim=1)
                x = getattr(backbone, _FUSIONS[i])(dense)
        return backbone.LR_conv(backbone.c(torch.cat(outs, dim=1))) + head


ADAPTERS = (DCTLSAAdapter,)
