"""ESRGAN (RRDBNet) as spandrel ships it (``spandrel.architectures.ESRGAN``).

spandrel converts every RRDBNet key layout it reads (old-arch ``model.N``, BasicSR / Real-ESRGAN
``conv_first`` / ``body`` / ``conv_body``, BSRGAN ``RRDB_trunk`` / ``trunk_conv``, ESRGAN+
``conv1x1``) into one module: ``model`` is a flat ``nn.Sequential`` of the feature conv
(``model[0]``), a shortcut block (``model[1]``, ``x + sub(x)`` with ``sub`` the RRDB blocks and
the LR conv), then the upsampler (``nn.Upsample`` + conv + activation per x2 step, or a pixel
shuffle block), ``HRconv`` with its activation and the last conv. x1 / x2 Real-ESRGAN models
(``shuffle_factor`` 4 / 2) reflect-pad the input to a multiple of the factor and
pixel-unshuffle it first; their features lie at stride 2 or 4 over the input.

**Cut point:** the output of the shortcut block, ``model[0](x) + sub(model[0](x))``: the input of
``model[2]``, the first upsampler layer. **AFE blocks** go before RRDB blocks (every
``afe_every``-th, default a quarter of the body: 4 AFE blocks), never before the LR conv that
closes the trunk. The ESRGAN+ ``plus`` variant (1x1 residual convs inside each dense block) has
the same outer structure and is covered unchanged.

Not carried over: the crop of the padded output back to ``h * scale`` (scaleeq renders the
requested size itself). The network adds no global residual and maps no output range.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..._checks import tracing
from ...ops.coords import pad_to
from ...scale import ScaleCondition
from .base import Adapter, interleave, run_body

__all__ = ["ESRGANAdapter"]


def _is_rrdb(module: nn.Module) -> bool:
    """An RRDB block: three residual dense blocks ``RDB1`` .. ``RDB3``."""
    return all(isinstance(getattr(module, f"RDB{i}", None), nn.Module) for i in (1, 2, 3))


class ESRGANAdapter(Adapter):
    name = "esrgan"
    family = "ESRGAN (RRDBNet, spandrel)"
    architectures = ("ESRGAN",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        seq = getattr(model, "model", None)
        if not (hasattr(model, "shuffle_factor") and isinstance(seq, nn.Sequential)):
            return False
        if len(seq) < 3 or not isinstance(seq[0], nn.Conv2d):
            return False
        sub = getattr(seq[1], "sub", None)
        return (
            isinstance(sub, nn.Sequential)
            and len(sub) >= 2
            and _is_rrdb(sub[0])
            and isinstance(sub[-1], nn.Conv2d)
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        head: nn.Conv2d = model.model[0]
        trunk: nn.Sequential = model.model[1].sub
        channels = int(head.out_channels)
        n_blocks = len(trunk) - 1  # the RRDB blocks; the last entry is the LR conv
        if settings["afe"] == "per_group":
            every = settings["afe_every"] or max(1, n_blocks // 4)
            trunk = interleave(trunk, channels, every, n_blocks)
        # A new container: ``model.model`` itself (shared with the input model) is not touched.
        backbone._modules["model"] = nn.Sequential(head, trunk)
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.model[2]

    def stride(self, backbone: nn.Module) -> int:
        return int(backbone.shuffle_factor or 1)

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d | None:
        return None if self.stride(backbone) > 1 else backbone.model[0]

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        s = self.stride(backbone)
        x = lr
        if s > 1:
            h, w = x.shape[-2:]
            if tracing() or h % s or w % s:  # (no branch on a symbolic size)
                x = F.pad(x, (0, pad_to(w, s), 0, pad_to(h, s)), mode="reflect")
            x = F.pixel_unshuffle(x, s)
        x = backbone.model[0](x)
        return x + run_body(backbone.model[1], x, scale)


ADAPTERS = (ESRGANAdapter,)
