"""The scale encoding of the EQSR paper (Eq. 2): sine-cosine features of a per-axis scale."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_int, float_dtype_for
from ..scale import ScaleLike, parse_scale

__all__ = ["ScaleEncoding"]


class ScaleEncoding(nn.Module):
    """Sine-cosine encoding of a per-axis scale (EQSR paper, Eq. 2).

    For each axis' factor ``r`` the features are
    ``[r, sin(2^i pi r / 10) for i < n, cos(2^i pi r / 10) for i < n]``, concatenated for
    ``r_h`` then ``r_w``: ``out_features = 2 * (2 * num_freqs + 1)``.

    The features are computed in float64 and cast to the requested dtype, so every channel is
    a deterministic function of the scale rather than of float32 rounding. (The official code
    feeds 40 frequencies of ``2 / H`` through float32; above ``2^20`` such channels are noise.)
    The default ``num_freqs=8`` resolves scale differences down to ~0.1 with its finest period
    ``20 / 2^7``; an input given as float32 instead of float64 then moves a channel by at most
    ~1e-4 at ``r = 30``.

    Args:
        num_freqs: number of frequencies ``n`` (>= 0).

    Shape:
        - scale: any scale argument (see :func:`as_scale_tensor`), ``N`` samples.
        - output: ``(N, out_features)``.
    """

    def __init__(self, num_freqs: int = 8) -> None:
        super().__init__()
        check_int(num_freqs, "num_freqs", minimum=0)
        self.num_freqs = num_freqs
        self.out_features = 2 * (2 * num_freqs + 1)

    def forward(
        self,
        scale: ScaleLike,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Encode ``scale`` (any scale argument) into ``(N, out_features)`` features.

        Args:
            scale: number, pair or tensor ``()``, ``(N,)``, ``(N, 2)``.
            device: device of the result (default: the tensor's, else CPU).
            dtype: dtype of the result (default: ``torch.get_default_dtype()``).
        """
        if device is None:
            device = scale.device if isinstance(scale, torch.Tensor) else torch.device("cpu")
        fdt = float_dtype_for(device)
        # validated where the scale lives (a render plan's scale is on the CPU: no device
        # sync), then moved
        r = parse_scale(scale, dtype=fdt, name="scale").to(device)  # (N, 2)
        freqs = (2.0 ** torch.arange(self.num_freqs, device=r.device, dtype=fdt)) * (math.pi / 10)
        ang = r[:, :, None] * freqs  # (N, 2, n)
        feats = torch.cat([r[:, :, None], torch.sin(ang), torch.cos(ang)], dim=2)  # (N, 2, 2n+1)
        return feats.flatten(1).to(dtype or torch.get_default_dtype())

    def extra_repr(self) -> str:
        return f"num_freqs={self.num_freqs}, out_features={self.out_features}"
