"""Scale encodings: the EQSR paper's sine-cosine features of a per-axis scale (Eq. 2), and how
a layer gets the encoding of a call's :class:`~scaleeq.scale.ScaleCondition` (computed once per
call and shared by every layer that uses the same encoding)."""

from __future__ import annotations

import math
from collections.abc import Hashable

import torch
from torch import nn

from .._checks import check_int, float_dtype_for
from ..scale import ScaleCondition, ScaleLike, parse_scale

__all__ = ["ScaleEncoder", "ScaleEncoding", "encode_condition"]


class ScaleEncoder(nn.Module):
    """Base of scaleeq's scale encodings: ``forward`` parses any scale argument and calls
    :meth:`encode`, the math on a parsed scale; encoders with equal :meth:`cache_key` give
    equal features, so one call computes them once for all its layers.

    Attributes:
        out_features: features per sample.
    """

    out_features: int

    def cache_key(self) -> Hashable:
        """Encoders with the same key compute the same features (default: this instance)."""
        return id(self)

    def encode(self, r: torch.Tensor, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Features ``(N, out_features)`` of a parsed scale ``r`` ``(N, 2)`` float64 (CPU)."""
        raise NotImplementedError

    def forward(
        self,
        scale: ScaleLike,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Encode ``scale`` (number, pair, tensor ``()``, ``(N,)``, ``(N, 2)``, or a
        :class:`~scaleeq.scale.ScaleCondition`) into ``(N, out_features)`` features.

        Args:
            device: device of the result (default: the tensor's, else CPU).
            dtype: dtype of the result (default: ``torch.get_default_dtype()``).
        """
        if device is None:
            device = scale.device if isinstance(scale, torch.Tensor) else torch.device("cpu")
        device = torch.device(device)
        dtype = dtype or torch.get_default_dtype()
        if isinstance(scale, ScaleCondition):
            return encode_condition(self, scale, device=device, dtype=dtype)
        return self.encode(self._parse(scale), device=device, dtype=dtype)

    def _parse(self, scale: ScaleLike) -> torch.Tensor:
        return parse_scale(scale, device="cpu", dtype=torch.float64, name="scale")


def encode_condition(
    encoding: nn.Module, cond: ScaleCondition, *, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``encoding``'s features ``(N, out_features)`` of ``cond``, computed once per call for
    each encoder key, device and dtype (a user's own encoding module: once per instance,
    called with the parsed ``(N, 2)`` scale)."""
    if isinstance(encoding, ScaleEncoder):
        key: Hashable = (encoding.cache_key(), device, dtype)
        return cond.encoded(key, lambda: encoding.encode(cond.value, device=device, dtype=dtype))
    key = (id(encoding), device, dtype)
    return cond.encoded(key, lambda: encoding(cond.value, device=device, dtype=dtype))


class ScaleEncoding(ScaleEncoder):
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

    def cache_key(self) -> Hashable:
        return ("ScaleEncoding", self.num_freqs)  # no parameters: equal settings, equal features

    def encode(self, r: torch.Tensor, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        fdt = float_dtype_for(device)
        r = r.to(device=device, dtype=fdt)  # (N, 2)
        freqs = (2.0 ** torch.arange(self.num_freqs, device=device, dtype=fdt)) * (math.pi / 10)
        ang = r[:, :, None] * freqs  # (N, 2, n)
        feats = torch.cat([r[:, :, None], torch.sin(ang), torch.cos(ang)], dim=2)  # (N, 2, 2n+1)
        return feats.flatten(1).to(dtype)

    def extra_repr(self) -> str:
        return f"num_freqs={self.num_freqs}, out_features={self.out_features}"
