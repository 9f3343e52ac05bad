"""SPAN (Swift Parameter-free Attention Network) as spandrel ships it
(``spandrel.architectures.SPAN``).

The forward normalises the input to ``(x - mean) * img_range`` unless the model has the
``no_norm`` buffer, runs ``conv_1`` and six SPAB blocks ``block_1`` .. ``block_6`` (each
returns ``(out, out1, attention)``), and concatenates ``conv_1``'s output, ``conv_2(block_6)``,
``block_1``'s output and ``block_6``'s first-conv output through the 1x1 ``conv_cat``; the
``upsampler`` (conv + pixel shuffle) renders from that.

**Cut point:** the output of ``conv_cat``, the input of ``upsampler``. **AFE blocks** go before
each of the six SPAB blocks (a wrapper per block hands the scale on and returns the block's
tuple unchanged); ``afe_every`` keeps every ``afe_every``-th of them. ``conv_1``'s output that
``conv_cat`` reads is the map *before* the first AFE block, as in the network.

Not carried over: nothing. The network adds no global residual, and it does not undo its input
normalisation on the output (spandrel's ``forward`` returns the upsampler's output as it is),
so the output transform is the identity. The Conv3XC layers keep their own train / eval
behaviour (eval re-parameterises ``eval_conv`` from the training branches on every call).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from ..._activation_checkpoint import maybe_checkpoint
from ...layers.afe import AFEBlock
from ...scale import ScaleCondition
from .base import Adapter

__all__ = ["SPANAdapter"]

_BLOCKS = tuple(f"block_{i}" for i in range(1, 7))
_REQUIRED = ("conv_1", *_BLOCKS, "conv_cat", "conv_2", "upsampler", "no_norm", "img_range", "mean")


class AFEThenSPAB(nn.Module):
    """A SPAB block preceded by an identity-at-init AFE block: ``forward(x, scale)`` returns the
    block's ``(out, out1, attention)`` tuple; with ``checkpointing`` set both run under
    activation checkpointing while gradients are enabled."""

    def __init__(self, afe: AFEBlock, block: nn.Module) -> None:
        super().__init__()
        self.afe = afe
        self.block = block
        self.checkpointing: str | None = None

    def forward(self, x: torch.Tensor, scale: ScaleCondition) -> tuple[torch.Tensor, ...]:
        x = maybe_checkpoint(self.afe, x, scale, mode=self.checkpointing)
        return maybe_checkpoint(self.block, x, mode=self.checkpointing)


class SPANAdapter(Adapter):
    name = "span"
    family = "SPAN"
    architectures = ("SPAN",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return (
            all(hasattr(model, a) for a in _REQUIRED)
            and isinstance(model.conv_cat, nn.Conv2d)
            and isinstance(model.upsampler, nn.Sequential)
            and all(hasattr(getattr(model, b), "c3_r") for b in _BLOCKS)
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(model.conv_cat.out_channels)
        if settings["afe"] == "per_group":
            every = settings["afe_every"] or 1
            for i, name in enumerate(_BLOCKS):
                if i % every == 0:
                    block = getattr(model, name)
                    backbone._modules[name] = AFEThenSPAB(
                        AFEBlock(channels, identity_init=True), block
                    )
        del backbone._modules["upsampler"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.upsampler

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.conv_1.sk

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        x = lr
        if backbone.no_norm is None:  # the network's is_norm
            x = (lr - torch.as_tensor(backbone.mean).to(lr)) * backbone.img_range
        feat = backbone.conv_1(x)
        outs = []
        h = feat
        for name in _BLOCKS:
            block = getattr(backbone, name)
            h, out1, _att = block(h, scale) if isinstance(block, AFEThenSPAB) else block(h)
            outs.append((h, out1))
        b1 = outs[0][0]
        b6, b5_2 = outs[5]
        return backbone.conv_cat(torch.cat([feat, backbone.conv_2(b6), b1, b5_2], 1))

    def prepare_export(self, backbone: nn.Module) -> None:
        """Fuse each Conv3XC once (its own ``update_params``) and run it as the fused conv.

        In eval mode a Conv3XC re-fuses its three training convolutions into ``eval_conv`` on
        every call by assigning ``.data``, which ``torch.export`` cannot trace. The export's
        copy is frozen, so fusing once before tracing gives the same outputs."""
        for m in backbone.modules():
            if hasattr(m, "update_params") and isinstance(getattr(m, "eval_conv", None), nn.Conv2d):
                with torch.no_grad():
                    m.update_params()
                m.forward = types.MethodType(_fused_forward, m)

    def set_checkpointing(self, backbone: nn.Module, mode: str | None) -> int:
        count = 0
        for m in backbone.modules():
            if isinstance(m, AFEThenSPAB):
                m.checkpointing = mode
                count += 1
        return count


def _fused_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A fused Conv3XC in eval mode: its ``eval_conv``, then its leaky ReLU (slope 0.05, as the
    module's own forward)."""
    out = self.eval_conv(x)
    return F.leaky_relu(out, negative_slope=0.05) if self.has_relu else out


ADAPTERS = (SPANAdapter,)
