"""ATD (Adaptive Token Dictionary), as spandrel ships it (``spandrel.architectures.ATD``).

Layout: ``conv_first``, ``patch_embed``, ``layers`` (ATDB groups called as
``group(tokens, x_size, params)``), ``norm``, ``patch_unembed``, ``conv_after_body``, the
buffer ``relative_position_index_SA`` and ``calculate_mask``; tails ``pixelshuffle``
(``conv_before_upsample``, ``upsample``, ``conv_last``), ``pixelshuffledirect`` (``upsample``)
and ``nearest+conv`` (``conv_before_upsample``, ``conv_up1``, ``conv_up2``, ``conv_hr``,
``conv_last``). The input is padded at the bottom / right to a multiple of ``window_size`` by
appending the flipped image (a symmetric pad; the adapter pads the same way, into a new
tensor), then normalised ``(x - mean) * img_range`` unless the model was built with
``norm=False`` (the ``no_norm`` buffer); the output is mapped back the same way.

**Cut point:** ``conv_after_body(forward_features(x, params)) + x`` (``params``: the shifted-
window attention mask of the padded size and ``relative_position_index_SA``, built as ATD's
forward builds them), the input of ``conv_before_upsample`` or ``upsample``; cropped back to
the input size (the network crops its output after the tail).

**AFE blocks:** one identity-at-init :class:`~scaleeq.AFETokenBlock` before each ATDB group.

Not carried over: the ``upsampler=""`` variant (x1 restoration, ``x + conv_last(res)``) has no
upsampling tail; :meth:`ATDAdapter.build` refuses it. No global residual for the SR tails.
"""

from __future__ import annotations

import torch
from torch import nn

from ...ops.coords import ceil_div
from ...ops.padding import crop_padding
from ...scale import ScaleCondition
from .base import afe_layers, run_layers
from .basicsr import MeanRangeAdapter

__all__ = ["ATDAdapter", "flip_pad"]

_REQUIRED = (
    "conv_first",
    "patch_embed",
    "layers",
    "norm",
    "patch_unembed",
    "conv_after_body",
    "relative_position_index_SA",
    "calculate_mask",
    "window_size",
    "mean",
    "img_range",
)


def flip_pad(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``x`` ``(B, C, h0, w0)`` extended to ``(h, w)`` at the bottom / right by appending its
    flipped self (a symmetric pad, the edge row repeated), as ATD and CRAFT pad their input;
    a new tensor (``x`` is not modified). Needs ``h <= 2 h0`` and ``w <= 2 w0``."""
    x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :h, :]
    return torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, :w]


class ATDAdapter(MeanRangeAdapter):
    name = "atd"
    export_batch = 1  # its window attention computes the batch from sizes
    family = "ATD"
    architectures = ("ATD",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        if not all(hasattr(model, a) for a in _REQUIRED):
            return False
        layers = model.layers
        if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
            return False
        group = getattr(layers[0], "residual_group", None)
        return isinstance(getattr(group, "td", None), nn.Parameter) and isinstance(
            getattr(group, "layers", None), nn.ModuleList
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int | None:
        if not any(
            isinstance(getattr(model, n, None), nn.Module) for n in ("upsample", "conv_up1")
        ):
            raise ValueError(
                "this ATD model has no upsampling tail (upsampler='': x1 restoration); "
                "retrofit needs a super-resolution model"
            )
        channels = int(model.conv_first.out_channels)
        if settings["afe"] == "per_group":
            backbone.layers = afe_layers(model.layers, int(model.embed_dim))
        self.drop_tail(backbone)
        return channels

    def probe_size(self, model: nn.Module) -> tuple[int, int]:
        ws = int(model.window_size)
        return (2 * ws, 2 * ws)  # a multiple of the window: no padding to crop

    def _normalised(self, backbone: nn.Module) -> bool:
        return getattr(backbone, "no_norm", None) is None

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        h0, w0 = lr.shape[-2:]
        ws = int(backbone.window_size)
        h, w = ceil_div(h0, ws) * ws, ceil_div(w0, ws) * ws
        x = flip_pad(lr, h, w)
        if self._normalised(backbone):
            x = (x - torch.as_tensor(backbone.mean).to(x)) * backbone.img_range
        params = {
            "attn_mask": backbone.calculate_mask([h, w]).to(x.device),
            "rpi_sa": backbone.relative_position_index_SA,
        }
        x = backbone.conv_first(x)
        t = backbone.patch_embed(x)
        if getattr(backbone, "ape", False):
            t = t + backbone.absolute_pos_embed
        t = run_layers(backbone.layers, t, (h, w), scale, params)
        body = backbone.patch_unembed(backbone.norm(t), (h, w))
        return crop_padding(backbone.conv_after_body(body) + x, (h0, w0))

    def output_range(self, backbone: nn.Module) -> float:
        return float(backbone.img_range) if self._normalised(backbone) else 1.0

    def output(self, backbone: nn.Module, out: torch.Tensor) -> torch.Tensor:
        return super().output(backbone, out) if self._normalised(backbone) else out


ADAPTERS = (ATDAdapter,)
