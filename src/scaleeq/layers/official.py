"""Official-checkpoint compatibility: the official EQSR code's quirks, in one place.

scaleeq's own choices differ from the official research code where the official form is
scale-inconsistent or cannot render exact windows (docs/design.md). To load and reproduce an
official checkpoint, the layers take these instead:

- :class:`OfficialCellEncoding`: the AFE blocks' scale code, 81 float32 features of the HR
  *cell height* ``2 / H_hr`` (``ScaleEncoding`` encodes the factor, in float64);
  :meth:`OfficialCellEncoding.cells` turns output sizes into that cell;
- :data:`OFFICIAL_ROUNDING`: the float32 placement of the HR queries on the LR grid
  (:class:`~scaleeq.ops.coords.OfficialRounding`, ``rounding="official"``; defined in
  :mod:`scaleeq.ops.coords` because the query geometry sits below the layers);
- :class:`OfficialECA`: the upsampler's ECA channel attention on the HR map, without sigmoid
  (``channel_attention="eca"``; not window-exact, so such an upsampler renders whole outputs);
- :data:`OFFICIAL_UPSAMPLER`: the settings of the official upsampler ("DSF"), which
  :meth:`NeuralKrigingUpsampler.official <scaleeq.layers.kriging.NeuralKrigingUpsampler.official>`
  builds.

``EQSR(official=True)`` (:mod:`scaleeq.models.eqsr`) combines them; the checkpoint's key maps
and its loader are :mod:`scaleeq.models.official`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ..ops.coords import ROUNDINGS, AxisRounding
from ..scale import ScaleLike, parse_scale
from .channel_attention import BlockAttention
from .encoding import ScaleEncoder
from .latent import linear

__all__ = [
    "OFFICIAL_ROUNDING",
    "OFFICIAL_UPSAMPLER",
    "OfficialCellEncoding",
    "OfficialECA",
]

#: The official float32 query placement (``rounding="official"``).
OFFICIAL_ROUNDING: AxisRounding = ROUNDINGS["official"]

#: The official upsampler ("DSF"): latent 256, 2 blocks, 3x3, 32 groups of 8, 40 offset
#: frequencies in half-pixel units, float32 nearest-pixel rounding, ECA channel attention
#: without sigmoid, ReLU after each block and in the head / before the tail, initial
#: length-scale 3 half-pixels. ``NeuralKrigingUpsampler`` constructor arguments (the stored
#: config spells them so), read-only.
OFFICIAL_UPSAMPLER: Mapping[str, Any] = MappingProxyType(
    {
        "hidden": 256,
        "blocks": 2,
        "kernel_size": 3,
        "num_freqs": 40,
        "group_channels": 8,
        "channel_attention": "eca",
        "lengthscale": 1.5,
        "offset_unit": 2.0,
        "rounding": "official",
        "block_act": True,
        "activation": "relu",
    }
)


class OfficialCellEncoding(ScaleEncoder):
    """The official code's scale code: 81 features of the HR *cell height* ``c = 2 / H_hr``.

    ``[c, sin(a_0), cos(a_0), sin(a_1), cos(a_1), ..., sin(a_39), cos(a_39)]`` with
    ``a_i = 2^i * pi * c / 10``, evaluated in float32 in the official order of operations
    (``(f32(2^i pi) * c) / 10``, which equals ``2^i * ((f32(pi) * c) / 10)`` bit for bit), so
    official checkpoints see the exact values they were trained with. Only the height axis is
    used. Frequencies above ~2^20 are float32 noise; this is a compatibility mode, not a
    recommendation.

    Its input is the cell, not the scale factor: :class:`~scaleeq.models.EQSR` with
    ``official=True`` turns each sample's scale into ``2 / round(h * r_h)``
    (:meth:`cells`) before calling its AFE blocks.

    Shape:
        - cell: any scale argument, ``N`` samples (column 0 = cell height is read)
        - output: ``(N, 81)``
    """

    num_freqs = 40
    out_features = 2 * num_freqs + 1

    @staticmethod
    def cells(sizes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The official cell ``2 / size`` of output sizes ``(N, 2)`` (both columns; the
        encoding reads the first), in ``dtype``: what official-mode AFE blocks are
        conditioned on."""
        return 2.0 / sizes.to(dtype)

    def cache_key(self) -> Hashable:
        return "OfficialCellEncoding"  # no parameters, no settings

    def _parse(self, scale: ScaleLike) -> torch.Tensor:
        return parse_scale(scale, device="cpu", dtype=torch.float64, name="cell")

    def encode(self, r: torch.Tensor, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        c = r[:, :1].to(
            device=device, dtype=torch.float32
        )  # (N, 1), rounded once like the official
        base = (torch.tensor(math.pi, dtype=torch.float32, device=device) * c) / 10
        ang = base * (2.0 ** torch.arange(self.num_freqs, device=device, dtype=torch.float32))
        feats = torch.stack([torch.sin(ang), torch.cos(ang)], dim=2).flatten(1)  # (N, 80)
        return torch.cat([c, feats], dim=1).to(dtype)

    def extra_repr(self) -> str:
        return f"num_freqs={self.num_freqs}, out_features={self.out_features}"


class OfficialECA(BlockAttention, nn.Conv1d):
    """``channel_attention="eca"``: the official FFN's ECA without sigmoid. The FFN's output
    ``f`` is scaled per channel by a 5-tap convolution (``weight`` ``(1, 1, 5)``, no bias) of
    its spatial mean over the whole HR map; every output pixel thus depends on the whole
    output, so it is not window-exact: an upsampler using it renders whole outputs only.
    """

    name = "eca"
    window_exact = False
    needs_context = False

    def __init__(self, dim: int = 0, context_dim: int = 0) -> None:
        super().__init__(1, 1, 5, padding=2, bias=False)  # nn.Conv1d: same parameters, draws

    def add_ffn(
        self,
        z: torch.Tensor,
        hidden: torch.Tensor,
        last: nn.Conv2d,
        context: torch.Tensor | None,
    ) -> torch.Tensor:
        f = linear(hidden, last)
        return z + f * self(f.mean(dim=(1, 2))[:, None, :])[:, 0, None, None, :]
