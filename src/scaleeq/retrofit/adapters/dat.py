"""DAT (Dual Aggregation Transformer), as spandrel ships it (``spandrel.architectures.DAT``).

Layout: ``conv_first``, ``before_RG`` (tokens + LayerNorm), ``layers`` (residual groups called
as ``group(tokens, x_size)``), ``norm``, ``conv_after_body``; tails ``pixelshuffle``
(``conv_before_upsample``, ``upsample``, ``conv_last``) and ``pixelshuffledirect``
(``upsample``). Input ``(lr - mean) * img_range``, output ``/ img_range + mean``.

**Cut point:** ``conv_after_body(forward_features(x)) + x`` with ``x = conv_first(...)``, the
input of ``conv_before_upsample`` (pixelshuffle) or ``upsample`` (pixelshuffledirect).

**AFE blocks:** one identity-at-init :class:`~scaleeq.AFETokenBlock` before each residual
group of ``layers`` (the adapter runs ``forward_features``' loop itself to hand them the scale).
DAT pads inside its attention only (to the split size), so the features are at input size and
need no crop. Nothing runs after the tail but the mean / range transform (:meth:`output`):
there is no global residual.

:class:`BeforeRGAdapter` is shared with RGT (:mod:`.rgt`), which has the same outer layout.
"""

from __future__ import annotations

import torch
from torch import nn

from ...scale import ScaleCondition
from .base import afe_layers, out_channels, run_layers
from .basicsr import MeanRangeAdapter

__all__ = ["BeforeRGAdapter", "DATAdapter"]

_REQUIRED = ("conv_first", "before_RG", "layers", "norm", "conv_after_body", "mean", "img_range")


def first_block(model: nn.Module) -> nn.Module | None:
    """``layers[0].blocks[0]`` (the first transformer block), or ``None``."""
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        return None
    blocks = getattr(layers[0], "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        return None
    return blocks[0]


class BeforeRGAdapter(MeanRangeAdapter):
    """DAT / RGT: ``before_RG`` tokens through token residual groups over a conv head."""

    @classmethod
    def _has_layout(cls, model: nn.Module) -> bool:
        return (
            all(hasattr(model, a) for a in _REQUIRED)
            and isinstance(model.before_RG, nn.Sequential)
            and isinstance(model.layers, nn.ModuleList)
            and isinstance(model.conv_first, nn.Conv2d)
            and isinstance(getattr(model, "upsample", None), nn.Module)
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int | None:
        channels = int(model.conv_first.out_channels)
        if settings["afe"] == "per_group":
            backbone.layers = afe_layers(model.layers, channels)
        self.drop_tail(backbone)
        return out_channels(model.conv_after_body) or channels

    def probe_size(self, model: nn.Module) -> tuple[int, int]:
        return (16, 16)

    def _body(self, backbone: nn.Module, x: torch.Tensor, scale: ScaleCondition) -> torch.Tensor:
        """``forward_features`` with the scale handed to each AFE-wrapped group."""
        b, c, h, w = x.shape
        t = backbone.before_RG(x)
        t = run_layers(backbone.layers, t, (h, w), scale)
        t = backbone.norm(t)
        return t.transpose(1, 2).reshape(b, c, h, w)

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        x = (lr - torch.as_tensor(backbone.mean).to(lr)) * backbone.img_range  # a new tensor
        x = backbone.conv_first(x)
        return backbone.conv_after_body(self._body(backbone, x, scale)) + x


class DATAdapter(BeforeRGAdapter):
    name = "dat"
    export_batch = 1  # its window attention computes the batch from sizes
    family = "DAT"
    architectures = ("DAT",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        if not cls._has_layout(model):
            return False
        blk = first_block(model)
        attn = getattr(blk, "attn", None)
        return (
            blk is not None
            and isinstance(getattr(blk, "ffn", None), nn.Module)
            and isinstance(getattr(attn, "channel_interaction", None), nn.Module)
            and isinstance(getattr(attn, "spatial_interaction", None), nn.Module)
        )


ADAPTERS = (DATAdapter,)
