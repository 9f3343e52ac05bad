"""DITN (``spandrel.architectures.DITN``, the DITN_Real variant): UFONE groups over a conv
head.

Layout: ``sft`` (3x3 conv), ``UFONE`` (an ``nn.Sequential`` of UFONE groups: ``ITLs`` run on
non-overlapping ``patch_size`` patches, then ``SALs`` on the whole map), ``conv_after_body``,
``upsample`` (conv + pixel shuffle, the tail), ``patch_sizes``. The forward reflect-pads the
input to a multiple of the patch sizes' least common multiple.

**Cut point**: the input of ``upsample``, ``conv_after_body(UFONE(f)) + f`` with
``f = sft(x)``, on the padded map; the adapter crops it back to the input's ``h x w`` (the
network crops its output after the tail).

**AFE blocks**: two per UFONE group (spandrel's models have a single group): one before the
group (before its patch partition) and one between its ITL and SAL stages, where the map is
whole again; :class:`UFONEWithAFE` runs the group with the scale.

Nothing follows the tail except the crop: no global residual, no clamp.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..._activation_checkpoint import maybe_checkpoint
from ...layers.afe import AFEBlock
from ...ops.padding import crop_padding, pad_to_multiple
from ...scale import ScaleCondition
from .base import Adapter

__all__ = ["DITNAdapter", "UFONEWithAFE"]


class UFONEWithAFE(nn.Module):
    """A UFONE group (shared, unchanged) run with identity-at-init AFE blocks before it and
    between its ITL and SAL stages; ``forward(x, scale)``.

    With ``checkpointing`` set (``"reentrant"`` / ``"non_reentrant"``), each AFE block and each
    stage runs under activation checkpointing while gradients are enabled.
    """

    def __init__(self, group: nn.Module, channels: int) -> None:
        super().__init__()
        self.group = group
        self.afe = nn.ModuleList(AFEBlock(channels, identity_init=True) for _ in range(2))
        self.checkpointing: str | None = None

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        """The ITL stage: on ``patch_size`` patches, reassembled into the whole map."""
        p = int(self.group.patch_size)
        b, c, h, w = x.shape
        t = x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, p, p)
        t = self.group.ITLs(t)
        return t.view(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor, scale: ScaleCondition) -> torch.Tensor:
        mode = self.checkpointing
        x = maybe_checkpoint(self.afe[0], x, scale, mode=mode)
        x = maybe_checkpoint(self._local, x, mode=mode)
        x = maybe_checkpoint(self.afe[1], x, scale, mode=mode)
        return maybe_checkpoint(self.group.SALs, x, mode=mode)


class DITNAdapter(Adapter):
    name = "ditn"
    family = "DITN"
    architectures = ("DITN",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        body = getattr(model, "UFONE", None)
        tail = getattr(model, "upsample", None)
        return (
            isinstance(getattr(model, "sft", None), nn.Conv2d)
            and isinstance(getattr(model, "conv_after_body", None), nn.Conv2d)
            and isinstance(body, nn.Sequential)
            and len(body) > 0
            and all(
                isinstance(getattr(g, "ITLs", None), nn.Sequential)
                and isinstance(getattr(g, "SALs", None), nn.Sequential)
                for g in body
            )
            and isinstance(tail, nn.Sequential)
            and hasattr(model, "patch_sizes")
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(model.sft.out_channels)
        if settings["afe"] == "per_group":
            backbone.UFONE = nn.Sequential(*(UFONEWithAFE(g, channels) for g in model.UFONE))
        del backbone._modules["upsample"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.upsample

    def probe_size(self, model: nn.Module) -> tuple[int, int]:
        m = self._multiple(model)
        return (2 * m, 2 * m)

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.sft

    def set_checkpointing(self, backbone: nn.Module, mode: str | None) -> int:
        count = super().set_checkpointing(backbone, mode)
        for m in backbone.modules():
            if isinstance(m, UFONEWithAFE):
                m.checkpointing = mode
                count += 1
        return count

    @staticmethod
    def _multiple(backbone: nn.Module) -> int:
        """What the network pads to: the least common multiple of its ``patch_sizes``."""
        return math.lcm(*(int(p) for p in backbone.patch_sizes))

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        h, w = lr.shape[-2:]
        x = pad_to_multiple(lr, self._multiple(backbone))  # reflect, as the network pads
        f = backbone.sft(x)
        y = f
        for group in backbone.UFONE:
            y = group(y, scale) if isinstance(group, UFONEWithAFE) else group(y)
        return crop_padding(backbone.conv_after_body(y) + f, (h, w))


ADAPTERS = (DITNAdapter,)
