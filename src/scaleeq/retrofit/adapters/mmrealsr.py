"""MM-RealSR as spandrel ships it (``spandrel.architectures.MMRealSR``, ``MMRRDBNet_test``).

An ESRGAN trunk whose every RRDB is followed by a degradation-aware affine modulation:
``de_net`` (a ResNet degradation estimator on the input image) predicts one degree per
degradation; ``dd_embed`` embeds them, and ``am_list[i]`` maps the embedding to a per-channel
``(1 + gamma) * x + beta`` after ``body[i]``. All of it is deterministic (no noise, no
sampling), so it is carried over unchanged: :meth:`MMRealSRAdapter.features` runs the degree
estimation on ``lr`` exactly as the forward does (default ``custom_degrees=(None, None)``:
the estimated degrees).

**The cut point** is ``feat = conv_first(x) + conv_body(trunk)``, the LR map the tail
(``F.interpolate`` x2 -> ``conv_up1`` -> ``F.interpolate`` x2 -> ``conv_up2`` -> ``conv_hr``
-> ``conv_last``) starts from. The first step of the tail is a *function*, not a module, so no
module's input is the cut: the nearest module, ``conv_up1``, receives its nearest x2
upsampling. :meth:`~MMRealSRAdapter.tail_module` names ``conv_up1`` and
:func:`~scaleeq.retrofit.adapters.base.check_cut` reads its input at every second pixel
(:meth:`~MMRealSRAdapter.cut_reference`: exact, nearest x2 repeats each pixel).

**AFE blocks** go before every ``afe_every``-th (RRDB, modulation) pair (default: a quarter of
the trunk, so 4 blocks), i.e. on the modulated features entering the RRDB.

**Scales.** Only x4 models run in spandrel: for ``scale`` 2 / 1 the network pixel-unshuffles
the image for ``conv_first`` and builds ``de_net`` for the unshuffled channel count too, but its
forward feeds ``de_net`` the raw image, which fails (``expected input ... to have 12 channels,
but got 3``). The adapter refuses those models with that reason (:meth:`build`).

**Not carried over:** the second output of the network's forward (the estimated degrees; the
descriptor's ``call_fn`` drops it too), the ``custom_degrees`` override, and the network has no
global residual or clamp after its tail.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._activation_checkpoint import maybe_checkpoint
from ...layers.afe import AFEBlock
from ...ops.coords import ceil_div
from ...scale import ScaleCondition
from .base import Adapter

__all__ = ["MMRealSRAdapter", "ModulatedTrunk"]

_REQUIRED = (
    "conv_first",
    "body",
    "am_list",
    "conv_body",
    "conv_up1",
    "conv_up2",
    "conv_hr",
    "conv_last",
    "de_net",
    "dd_embed",
)


class ModulatedTrunk(nn.Module):
    """MM-RealSR's trunk: ``body[i]`` then ``am_list[i](x, d)`` for every block, an AFE block
    before every ``every``-th pair; ``forward(x, d, scale)`` with ``d`` the degradation
    embedding. With ``checkpointing`` set, each AFE block and each pair run under activation
    checkpointing while training."""

    def __init__(
        self, body: nn.ModuleList, am_list: nn.ModuleList, afe: nn.ModuleList, every: int
    ) -> None:
        super().__init__()
        self.body = body
        self.am_list = am_list
        self.afe = afe
        self.every = every
        self.checkpointing: str | None = None

    def _pair(self, i: int, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return self.am_list[i](self.body[i](x), d)

    def forward(self, x: torch.Tensor, d: torch.Tensor, scale: ScaleCondition) -> torch.Tensor:
        mode = self.checkpointing
        for i in range(len(self.body)):
            if len(self.afe) > 0 and i % self.every == 0:
                x = maybe_checkpoint(self.afe[i // self.every], x, scale, mode=mode)
            x = maybe_checkpoint(self._pair, i, x, d, mode=mode)
        return x


class MMRealSRAdapter(Adapter):
    name = "mmrealsr"
    family = "MM-RealSR"
    architectures = ("MMRealSR",)

    @classmethod
    def matches(cls, model):
        return (
            all(isinstance(getattr(model, a, None), nn.Module) for a in _REQUIRED)
            and isinstance(model.body, nn.ModuleList)
            and isinstance(model.am_list, nn.ModuleList)
            and len(model.body) == len(model.am_list)
            and isinstance(getattr(model.de_net, "fc_degree", None), nn.ModuleList)
            and hasattr(model, "num_degradation")
        )

    def cut_module(self, model: nn.Module) -> nn.Module:
        """The first module of the tail (its input is the nearest x2 of the cut)."""
        return model.conv_up1

    def cut_reference(
        self, model: nn.Module, ref: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """The LR features in ``ref``, the input of :meth:`cut_module`: every second pixel."""
        return ref[:, :, ::2, ::2]

    def tail_module(self, model):
        return self.cut_module(model)  # read through cut_reference by check_cut

    def build(self, model, backbone, settings):
        if int(model.scale) != 4:
            raise ValueError(
                f"retrofit cannot use this {type(model).__name__} (scale {model.scale}): "
                "spandrel's MM-RealSR forward runs only for scale 4 (for scale 2 / 1 it feeds "
                "de_net the raw image while de_net was built for the pixel-unshuffled one)"
            )
        channels = int(model.conv_first.out_channels)
        n = len(model.body)
        every = settings["afe_every"] or max(1, n // 4)
        count = ceil_div(n, every) if settings["afe"] == "per_group" else 0
        afe = nn.ModuleList(AFEBlock(channels, identity_init=True) for _ in range(count))
        del backbone._modules["body"], backbone._modules["am_list"]
        backbone.trunk = ModulatedTrunk(model.body, model.am_list, afe, every)
        for name in ("conv_up1", "conv_up2", "conv_hr", "conv_last"):
            del backbone._modules[name]
        return channels

    def set_checkpointing(self, backbone, mode):
        trunk = backbone.trunk
        if len(trunk.afe) == 0:
            return 0
        trunk.checkpointing = mode
        return 1

    def input_conv(self, backbone):
        return backbone.conv_first

    def _embedding(self, backbone: nn.Module, lr: torch.Tensor) -> torch.Tensor:
        """The degradation embedding of ``lr`` (estimated degrees, as the default forward)."""
        degrees = backbone.de_net(lr)
        return backbone.dd_embed(torch.stack(list(degrees[: int(backbone.num_degradation)]), dim=1))

    def features(self, backbone, lr, scale):
        feat = backbone.conv_first(lr)
        d = self._embedding(backbone, lr)
        return feat + backbone.conv_body(backbone.trunk(feat, d, scale))


ADAPTERS = (MMRealSRAdapter,)
