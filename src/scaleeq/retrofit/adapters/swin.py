"""SwinIR, Swin2SR, HAT and DRCT: token-based residual groups over a conv head.

As in their official code, BasicSR and spandrel: ``conv_first``, ``patch_embed``, ``layers``,
``norm``, ``patch_unembed``, ``conv_after_body``, ``forward_features``, ``mean``,
``img_range``, ``window_size``; tails ``pixelshuffle``, ``pixelshuffledirect`` and
``nearest+conv``; spandrel's SwinIR may put a pixel-unshuffle front end before ``conv_first``
(``start_unshuffle``: features at that stride over the input). Each entry of ``layers`` is
wrapped to run an AFE token block first. The adapter runs the body loop of
``forward_features`` itself (patch embedding, ``ape``, ``pos_drop``, the layers with HAT's
``params``, norm, unembedding) so that it can hand the scale to each layer;
:func:`~scaleeq.retrofit.adapters.base.check_cut` verifies at retrofit time that the loop
reproduces the model's own features.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from ..._checks import tracing
from ...ops.coords import ceil_div
from ...ops.padding import crop_padding, pad_to_multiple
from ...scale import ScaleCondition
from .base import afe_layers, out_channels, run_layers
from .basicsr import MeanRangeAdapter

__all__ = ["SwinAdapter"]

_REQUIRED = (
    "conv_first",
    "patch_embed",
    "layers",
    "patch_unembed",
    "conv_after_body",
    "forward_features",
    "mean",
    "img_range",
)


def _takes(fn: object, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


class SwinAdapter(MeanRangeAdapter):
    name = "swin"
    export_batch = 1  # its window attention computes the batch from sizes
    family = "SwinIR / Swin2SR / HAT / DRCT"
    architectures = ("SwinIR", "Swin2SR", "HAT", "DRCT")

    @classmethod
    def matches(cls, model):
        if not all(hasattr(model, a) for a in _REQUIRED):
            return False
        try:  # forward_features(x) only: ATD's also takes its params (adapters/atd.py)
            n = len(inspect.signature(model.forward_features).parameters)
        except (TypeError, ValueError):
            return False
        return isinstance(model.layers, nn.ModuleList) and n == 1

    def build(self, model, backbone, settings):
        channels = out_channels(model.conv_after_body)
        self._mask_dtype = _takes(getattr(model, "calculate_mask", None), "dtype")
        if settings["afe"] == "per_group":
            pe = model.patch_embed
            dim = int(pe.embed_dim) if hasattr(pe, "embed_dim") else channels
            backbone.layers = afe_layers(model.layers, dim)
        self.drop_tail(backbone)
        return channels

    def probe_size(self, model):
        ws = int(getattr(model, "window_size", 8)) * self.stride(model)
        return (2 * ws, 2 * ws)

    def stride(self, backbone):
        return int(getattr(backbone, "start_unshuffle", 1))

    def input_conv(self, backbone):
        return backbone.conv_first if self.stride(backbone) == 1 else None

    def _layer_args(self, backbone: nn.Module, x: torch.Tensor) -> tuple:
        """HAT's layers take ``params`` (attention mask and relative position indices);
        SwinIR's take none. HAT-style models have ``calculate_mask`` on the model itself
        (spandrel's takes the dtype too)."""
        if not hasattr(backbone, "calculate_mask"):
            return ()
        x_size = (x.shape[2], x.shape[3])
        if getattr(self, "_mask_dtype", False):
            mask = backbone.calculate_mask(x_size, dtype=x.dtype)
        else:
            mask = backbone.calculate_mask(x_size)
        params = {"attn_mask": mask.to(x.device)}
        for key, attr in (
            ("rpi_sa", "relative_position_index_SA"),
            ("rpi_oca", "relative_position_index_OCA"),
        ):
            if hasattr(backbone, attr):
                params[key] = getattr(backbone, attr)
        return (params,)

    def _body(
        self, backbone: nn.Module, x: torch.Tensor, scale: ScaleCondition | None
    ) -> torch.Tensor:
        """``forward_features`` with the scale handed to each AFE-wrapped layer."""
        x_size = (x.shape[2], x.shape[3])
        extra = self._layer_args(backbone, x)
        t = backbone.patch_embed(x)
        if getattr(backbone, "ape", False):
            t = t + backbone.absolute_pos_embed
        if hasattr(backbone, "pos_drop"):
            t = backbone.pos_drop(t)
        t = run_layers(backbone.layers, t, x_size, scale, *extra)
        return backbone.patch_unembed(backbone.norm(t), x_size)

    def features(self, backbone, lr, scale):
        h, w = lr.shape[-2:]
        x = (lr - torch.as_tensor(backbone.mean).to(lr)) * backbone.img_range
        if hasattr(backbone, "check_image_size") and not tracing():  # (the same padding)
            x = backbone.check_image_size(x)
        else:
            x = pad_to_multiple(x, int(getattr(backbone, "window_size", 1)))
        s = self.stride(backbone)
        if s > 1:
            x = F.pixel_unshuffle(x, s)
        x = backbone.conv_first(x)
        x = backbone.conv_after_body(self._body(backbone, x, scale)) + x
        return crop_padding(x, (ceil_div(h, s), ceil_div(w, s)))


ADAPTERS = (SwinAdapter,)
