"""RGT (Recursive Generalization Transformer), as spandrel ships it
(``spandrel.architectures.RGT``).

The outer layout is DAT's (:class:`~scaleeq.retrofit.adapters.dat.BeforeRGAdapter`):
``conv_first``, ``before_RG``, ``layers`` (residual groups ``group(tokens, x_size)``), ``norm``,
``conv_after_body``, and a single tail, ``pixelshuffle`` (``conv_before_upsample``,
``upsample``, ``conv_last``). Input ``(lr - mean) * img_range``, output ``/ img_range + mean``.

**Cut point:** ``conv_after_body(forward_features(x)) + x``, the input of
``conv_before_upsample``.

**AFE blocks:** one identity-at-init :class:`~scaleeq.AFETokenBlock` before each residual group.
RGT pads only inside its window attention, so the features are at input size. Its recursive
attention (RG-SA) shrinks the map by 4 at least twice in eval mode: inputs need at least 16
rows and columns (as for the original network). No global residual after the tail.
"""

from __future__ import annotations

from torch import nn

from .dat import BeforeRGAdapter, first_block

__all__ = ["RGTAdapter"]


class RGTAdapter(BeforeRGAdapter):
    name = "rgt"
    family = "RGT"
    architectures = ("RGT",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        if not cls._has_layout(model):
            return False
        blk = first_block(model)
        attn = getattr(blk, "attn", None)
        return (
            blk is not None
            and isinstance(getattr(blk, "gamma", None), nn.Parameter)
            and isinstance(getattr(blk, "mlp", None), nn.Module)
            and isinstance(getattr(attn, "attns", None), nn.ModuleList)
        )


ADAPTERS = (RGTAdapter,)
