"""CRAFT (Cross-Refinement Adaptive Fusion Transformer), as spandrel ships it
(``spandrel.architectures.CRAFT``).

Layout: ``conv_first``, ``layers`` (RCRFG groups called on NCHW maps as
``group(x, x_size, params)``), ``norm`` (a channel LayerNorm on NCHW maps),
``conv_after_body`` (a conv or ``nn.Identity``), the position buffers
``relative_position_index_h`` / ``_v`` and ``biases_h`` / ``_v``, and one tail, ``upsample``
(conv + pixel shuffle). CRAFT always pads its input at the bottom / right, by appending the
flipped image, to the next multiple of ``window_size`` *strictly above* its size (a size that
is already a multiple still gets a full window), normalises ``(x - mean) * img_range`` and
crops its output after the tail.

**Cut point:** ``conv_after_body(forward_features(x)) + x``, the input of ``upsample``, cropped
back to the input size. Because CRAFT pads every input, the cut features of its own forward are
never at the input size: :func:`~scaleeq.retrofit.adapters.base.check_cut` compares the
top-left crop (:meth:`~scaleeq.retrofit.adapters.base.Adapter.cut_reference`).

**AFE blocks:** one identity-at-init :class:`~scaleeq.AFEBlock` (NCHW) before each RCRFG group
(:class:`AFEThenMapGroup`). No global residual after the tail.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..._activation_checkpoint import maybe_checkpoint
from ...layers.afe import AFEBlock
from ...ops.padding import crop_padding
from ...scale import ScaleCondition
from .atd import flip_pad
from .base import AFEThenLayer, Interleaved
from .basicsr import MeanRangeAdapter

__all__ = ["AFEThenMapGroup", "CRAFTAdapter", "run_map_groups"]

_REQUIRED = (
    "conv_first",
    "layers",
    "norm",
    "conv_after_body",
    "upsample",
    "relative_position_index_h",
    "relative_position_index_v",
    "biases_h",
    "biases_v",
    "window_size",
    "mean",
    "img_range",
)


class AFEThenMapGroup(nn.Module):
    """A residual group over NCHW maps preceded by an AFE block (the NCHW counterpart of
    :class:`~scaleeq.retrofit.adapters.base.AFEThenLayer`).

    ``forward(x, x_size, scale, *args)``: ``x`` ``(B, C, H, W)``; ``args`` are the group's own
    extra arguments, passed on unchanged. With ``checkpointing`` set, the AFE block and the
    group run under activation checkpointing while gradients are enabled.
    """

    def __init__(self, afe: AFEBlock, layer: nn.Module) -> None:
        super().__init__()
        self.afe = afe
        self.layer = layer
        self.checkpointing: str | None = None

    def _run(
        self, x: torch.Tensor, x_size: tuple[int, int], scale: ScaleCondition, *args: Any
    ) -> torch.Tensor:
        return self.layer(self.afe(x, scale), x_size, *args)

    def forward(
        self, x: torch.Tensor, x_size: tuple[int, int], scale: ScaleCondition, *args: Any
    ) -> torch.Tensor:
        return maybe_checkpoint(self._run, x, x_size, scale, *args, mode=self.checkpointing)


def afe_map_groups(layers: nn.ModuleList, dim: int) -> nn.ModuleList:
    """Each NCHW group of ``layers`` wrapped to run an identity-at-init AFE block first."""
    return nn.ModuleList(AFEThenMapGroup(AFEBlock(dim, identity_init=True), g) for g in layers)


def run_map_groups(
    layers: nn.ModuleList,
    x: torch.Tensor,
    x_size: tuple[int, int],
    scale: ScaleCondition,
    *args: Any,
) -> torch.Tensor:
    """Run NCHW groups in order, handing the scale to the AFE-wrapped ones."""
    for layer in layers:
        x = (
            layer(x, x_size, scale, *args)
            if isinstance(layer, AFEThenMapGroup)
            else layer(x, x_size, *args)
        )
    return x


def set_wrapper_checkpointing(backbone: nn.Module, mode: str | None) -> int:
    """:meth:`Adapter.set_checkpointing` that also finds :class:`AFEThenMapGroup` wrappers."""
    count = 0
    for m in backbone.modules():
        if isinstance(m, Interleaved | AFEThenLayer | AFEThenMapGroup):
            m.checkpointing = mode
            count += 1
    return count


class CRAFTAdapter(MeanRangeAdapter):
    name = "craft"
    export_batch = 1  # its window attention computes the batch from sizes
    family = "CRAFT"
    architectures = ("CRAFT",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        if not all(hasattr(model, a) for a in _REQUIRED):
            return False
        layers = model.layers
        if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
            return False
        group = getattr(layers[0], "residual_group", None)
        return all(
            isinstance(getattr(group, n, None), nn.ModuleList)
            for n in ("srwa_blocks", "hfer_blocks", "hf_blocks")
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int | None:
        channels = int(model.conv_first.out_channels)
        if settings["afe"] == "per_group":
            backbone.layers = afe_map_groups(model.layers, channels)
        del backbone._modules["upsample"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module | None:
        return model.upsample  # its input is always padded: check_cut reads the top-left crop

    def probe_size(self, model: nn.Module) -> tuple[int, int]:
        ws = int(model.window_size)
        return (ws + 3, ws + 1)  # padded to 2 windows; crop checked

    def set_checkpointing(self, backbone: nn.Module, mode: str | None) -> int:
        return set_wrapper_checkpointing(backbone, mode)

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        h0, w0 = lr.shape[-2:]
        ws = int(backbone.window_size)
        h, w = (h0 // ws + 1) * ws, (w0 // ws + 1) * ws
        x = flip_pad(lr, h, w)
        x = (x - torch.as_tensor(backbone.mean).to(x)) * backbone.img_range
        x = backbone.conv_first(x)
        params = {
            "attn_mask": (None, None),
            "rpi_sa_h": backbone.relative_position_index_h,
            "rpi_sa_v": backbone.relative_position_index_v,
            "biases_v": backbone.biases_v,
            "biases_h": backbone.biases_h,
        }
        body = backbone.norm(run_map_groups(backbone.layers, x, (h, w), scale, params))
        return crop_padding(backbone.conv_after_body(body) + x, (h0, w0))


ADAPTERS = (CRAFTAdapter,)
