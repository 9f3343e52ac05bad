"""GRL (global, regional and local image restoration transformer), as spandrel ships it
(``spandrel.architectures.GRL``).

Layout: ``conv_first``, ``norm_start``, ``pos_drop``, ``layers`` (transformer stages called as
``stage(tokens, x_size, table_index_mask)``), ``norm_end``, ``conv_after_body``,
``get_table_index_mask`` (the relative-position tables, indices and shifted-window masks of a
size: the stored buffers at ``img_size``, computed otherwise), ``pad_size``; tails
``pixelshuffle`` (``conv_before_upsample``, ``upsample``, ``conv_last``), ``pixelshuffledirect``
(``upsample``) and ``nearest+conv`` (``conv_before_upsample``, ``conv_up1``, ``conv_up2``,
``conv_hr``, ``conv_last``). GRL pads its input at the bottom / right to a multiple of
``pad_size`` (``F.pad`` reflect, or zeros where the pad is too long to reflect, the rule of its
``check_image_size``; the adapter applies the same rule into a new tensor), normalises
``(x - mean) * img_range`` and crops its output after the tail.

**Cut point:** ``conv_after_body(forward_features(x)) + x``, the input of
``conv_before_upsample`` or ``upsample``, cropped back to the input size.

**AFE blocks:** one identity-at-init :class:`~scaleeq.AFETokenBlock` before each stage.

Not carried over: the ``upsampler=""`` variant (x1 restoration: ``x + conv_last(res)``) has no
upsampling tail; :meth:`GRLAdapter.build` refuses it. No global residual for the SR tails.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...ops.coords import pad_to
from ...ops.padding import crop_padding
from ...scale import ScaleCondition
from .base import afe_layers, run_layers
from .basicsr import MeanRangeAdapter

__all__ = ["GRLAdapter"]

_REQUIRED = (
    "conv_first",
    "norm_start",
    "layers",
    "norm_end",
    "conv_after_body",
    "get_table_index_mask",
    "pad_size",
    "mean",
    "img_range",
)


def _pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """GRL's ``check_image_size``: pad to a multiple, reflecting where the pad is shorter than
    the image (what ``F.pad`` reflect accepts), else with zeros; a new tensor or ``x``."""
    h, w = x.shape[-2:]
    ph, pw = pad_to(h, multiple), pad_to(w, multiple)
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "constant"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class GRLAdapter(MeanRangeAdapter):
    name = "grl"
    family = "GRL"
    architectures = ("GRL",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        if not all(hasattr(model, a) for a in _REQUIRED):
            return False
        layers = model.layers
        if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
            return False
        blocks = getattr(layers[0], "blocks", None)
        return isinstance(blocks, nn.ModuleList) and isinstance(
            getattr(layers[0], "conv", None), nn.Module
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int | None:
        if not any(
            isinstance(getattr(model, n, None), nn.Module) for n in ("upsample", "conv_up1")
        ):
            raise ValueError(
                "this GRL model has no upsampling tail (upsampler='': x1 restoration); "
                "retrofit needs a super-resolution model"
            )
        channels = int(model.conv_first.out_channels)
        if settings["afe"] == "per_group":
            backbone.layers = afe_layers(model.layers, channels)
        self.drop_tail(backbone)
        return channels

    def probe_size(self, model: nn.Module) -> tuple[int, int]:
        p = int(model.pad_size)
        return (p, p)  # no padding to crop

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        h0, w0 = lr.shape[-2:]
        x = _pad(lr, int(backbone.pad_size))
        x = (x - torch.as_tensor(backbone.mean).to(x)) * backbone.img_range  # a new tensor
        x = backbone.conv_first(x)
        b, c, h, w = x.shape
        t = backbone.pos_drop(backbone.norm_start(x.flatten(2).transpose(1, 2)))
        tables = backbone.get_table_index_mask(x.device, (h, w))
        t = run_layers(backbone.layers, t, (h, w), scale, tables)
        body = backbone.norm_end(t).transpose(1, 2).reshape(b, c, h, w)
        return crop_padding(backbone.conv_after_body(body) + x, (h0, w0))


ADAPTERS = (GRLAdapter,)
