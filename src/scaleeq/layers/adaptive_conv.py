"""AdaptiveConv2d: a convolution whose kernel is modulated by the upsampling scale (Eq. 2)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from .._checks import (
    check_channels,
    check_int,
    check_matching,
    check_min_size,
    check_pair,
    check_positive_float,
    check_tensor,
)
from ..context import scale_or_context
from ..functional import adaptive_conv2d
from ..scale import ScaleCondition, ScaleLike, check_scale_batch
from .encoding import ScaleEncoding, encode_condition

__all__ = ["IMPL_ALIASES", "AdaptiveConv2d", "Impl"]

Impl = Literal["auto", "input", "grouped"]

#: Former spellings of ``impl`` values, still accepted (``"scale"``: ``"input"``).
IMPL_ALIASES = {"scale": "input"}


class AdaptiveConv2d(nn.Module):
    r"""A KxK convolution whose kernel is modulated by the scale (EQSR, Eq. 2).

    The scale ``r = (r_h, r_w)`` is encoded by :class:`~scaleeq.ScaleEncoding`, mapped by a
    linear layer ``F`` to a style ``s`` of one value per input channel, and the kernel becomes

    .. math::
        W'_{b,o,i} = W_{o,i} \, (1 + s_{b,i}), \qquad
        W''_{b,o} = W'_{b,o} \big/ \sqrt{\textstyle\sum_{i,k} W'^2_{b,o,i,k} + \epsilon}

    (the second step only with ``demodulate=True``, as in StyleGAN2). The bias, if any, is
    added after demodulation.

    Two exact formulations are implemented; the result is the same, only speed differs:

    - ``"input"``: scale the *input* channels by ``1 + s``, run one ordinary convolution with
      ``W``, then scale each output channel by its demodulation factor. No per-sample kernel
      is ever built.
    - ``"grouped"``: build the per-sample kernels ``W''_b`` and run one grouped convolution
      with ``groups=B`` (the StyleGAN2 / official EQSR form). Used only with demodulation;
      without it input scaling is always taken, so the identity at init stays bit-exact.

    ``impl="auto"`` picks per device and width (on the CPU: grouped up to 128x128 channels,
    input scaling beyond; see docs/benchmarks.md).

    When every sample shares one scale (a number or a pair was given), the layer folds the
    modulation into the weight and runs a single plain convolution: the cost of ``nn.Conv2d``
    plus a weight-sized elementwise op.

    **Identity at initialisation.** With ``zero_init=True`` the mapping ``F`` starts at zero, so
    ``1 + s = 1`` for every scale:

    - ``demodulate=False``: the layer *is* ``nn.Conv2d`` with the same weight and bias,
      bit for bit, at every scale. This is the retrofit-friendly mode (see :meth:`from_conv`).
    - ``demodulate=True``: the layer is ``nn.Conv2d`` with weight-standardised filters
      ``W_o / sqrt(||W_o||^2 + eps)`` (each output filter scaled to unit norm), at every scale.
      It is scale-independent at init, but not equal to the conv with the raw ``W``.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: int or ``(kh, kw)``.
        stride: int or pair.
        padding: ``"same"`` (default; odd kernels pad ``k // 2``), ``"valid"``, int or pair.
        bias: add a learnable bias.
        num_freqs: frequencies of the scale encoding (ignored when ``encoding`` is given).
        demodulate: apply StyleGAN2 demodulation.
        zero_init: start ``F`` at zero (identity at init, see above).
        eps: added inside the demodulation rsqrt.
        impl: ``"auto"`` (fastest exact formulation for the device), ``"input"`` (input
            scaling; ``"scale"``, its former name, is accepted) or ``"grouped"``; used for
            per-sample scales.
        encoding: a module mapping a scale argument to features of size
            ``encoding.out_features``; default ``ScaleEncoding(num_freqs)``.

    Shape:
        - x: :math:`(B, C_{in}, H, W)`
        - scale: a number, ``(r_h, r_w)``, or a tensor ``(B,)`` / ``(B, 2)``; omitted, the
          active :func:`~scaleeq.scale_context` is used.
        - output: :math:`(B, C_{out}, H', W')`, ``H' = H`` for stride 1 and ``"same"``.

    Example:
        >>> conv = AdaptiveConv2d(16, 32, 3)
        >>> conv(torch.randn(2, 16, 24, 24), scale=torch.tensor([2.0, 3.7])).shape
        torch.Size([2, 32, 24, 24])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = "same",
        bias: bool = True,
        num_freqs: int = 8,
        demodulate: bool = True,
        zero_init: bool = True,
        eps: float = 1e-8,
        impl: Impl = "auto",
        encoding: nn.Module | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int(in_channels, "in_channels")
        check_int(out_channels, "out_channels")
        impl = IMPL_ALIASES.get(impl, impl)
        if impl not in ("auto", "input", "grouped"):
            raise ValueError(f"impl must be 'auto', 'input' or 'grouped', got {impl!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = check_pair(kernel_size, "kernel_size")
        self.stride = check_pair(stride, "stride")
        for name, pair in (("kernel_size", self.kernel_size), ("stride", self.stride)):
            if min(pair) < 1:
                raise ValueError(f"{name} must be >= 1, got {pair}")
        self.padding = self._resolve_padding(padding)
        # the smallest input the padded convolution accepts: one kernel must fit ("same"
        # with an even kernel: any non-empty input)
        self._min_input = (1, 1)
        if isinstance(self.padding, tuple):
            pairs = zip(self.kernel_size, self.padding, strict=True)
            self._min_input = tuple(max(1, k - 2 * p) for k, p in pairs)
        self._min_input_why = f" for kernel_size {self.kernel_size} with padding {self.padding}"
        self.demodulate = bool(demodulate)
        self.eps = check_positive_float(eps, "eps")
        self.impl = impl
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, *self.kernel_size, **factory)
        )
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.encoding = encoding if encoding is not None else ScaleEncoding(num_freqs)
        self.to_style = nn.Linear(self.encoding.out_features, in_channels, **factory)
        self.zero_init = bool(zero_init)
        self.reset_parameters()

    def _resolve_padding(self, padding: str | int | tuple[int, int]) -> tuple[int, int] | str:
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            kh, kw = self.kernel_size
            if kh % 2 == 1 and kw % 2 == 1:
                return (kh // 2, kw // 2)
            if self.stride != (1, 1):
                raise ValueError(
                    f"padding='same' with an even kernel_size {self.kernel_size} needs stride 1, "
                    f"got stride {self.stride}"
                )
            return "same"
        if isinstance(padding, str):
            raise ValueError(f"padding must be 'same', 'valid', an int or a pair, got {padding!r}")
        return check_pair(padding, "padding")

    def reset_parameters(self) -> None:
        """Initialise like ``nn.Conv2d``; ``F`` at zero if ``zero_init`` else small."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)
        if self.zero_init:
            nn.init.zeros_(self.to_style.weight)
            nn.init.zeros_(self.to_style.bias)
        else:
            nn.init.normal_(self.to_style.weight, std=0.02)
            nn.init.zeros_(self.to_style.bias)

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, *, num_freqs: int = 8, demodulate: bool = False
    ) -> AdaptiveConv2d:
        """Build an AdaptiveConv2d that starts as an exact copy of ``conv``.

        With the default ``demodulate=False`` and zero-initialised ``F`` the result equals
        ``conv`` bit for bit at every scale until ``F`` is trained. The weights are copied.

        Raises:
            TypeError: ``conv`` is not an ``nn.Conv2d``.
            ValueError: ``conv`` uses groups, dilation or a non-zero padding mode.
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
            raise ValueError(
                "conv must have groups=1, dilation=1 and padding_mode='zeros', got "
                f"groups={conv.groups}, dilation={conv.dilation}, "
                f"padding_mode={conv.padding_mode!r}"
            )
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride,  # type: ignore[arg-type]
            padding=conv.padding if isinstance(conv.padding, str) else tuple(conv.padding),  # type: ignore[arg-type]
            bias=conv.bias is not None,
            num_freqs=num_freqs,
            demodulate=demodulate,
            zero_init=True,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                assert layer.bias is not None
                layer.bias.copy_(conv.bias)
        return layer

    def style(self, scale: ScaleLike, *, device: torch.device | None = None) -> torch.Tensor:
        """The modulation ``1 + s`` of shape ``(N, C_in)``, ``N`` = 1 for a shared scale."""
        device = torch.device(device or self.weight.device)
        dtype = self.to_style.weight.dtype
        if isinstance(scale, ScaleCondition):  # the call's encoding, shared by its layers
            enc = encode_condition(self.encoding, scale, device=device, dtype=dtype)
        else:
            enc = self.encoding(scale, device=device, dtype=dtype)
        return 1 + self.to_style(enc)

    def forward(self, x: torch.Tensor, scale: ScaleLike | None = None) -> torch.Tensor:
        """``x`` ``(B, C_in, H, W)`` at ``scale`` (any scale argument with 1 or ``B`` samples;
        ``None``: the active :func:`~scaleeq.scale_context`). Given the
        :class:`~scaleeq.scale.ScaleCondition` of a model's call, it trusts ``x`` and the scale
        (the model checked both) and uses the call's shared encoding."""
        if isinstance(scale, ScaleCondition):
            return self._modulated(x, self.style(scale, device=x.device).to(x.dtype))
        check_tensor(x, "x", ndim=4, layout="(B, C_in, H, W)")
        check_channels(x, "x", self.in_channels)
        check_matching(x, "x", self.weight)
        check_min_size(x, "x", self._min_input, self._min_input_why)  # one kernel must fit
        scale = scale_or_context(scale, type(self).__name__)
        style = self.style(scale, device=x.device)  # (N, I)
        check_scale_batch(style, x.shape[0], "scale")
        return self._modulated(x, style.to(x.dtype))

    def _modulated(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The convolution of checked ``x`` ``(B, I, H, W)`` with styles ``(N, I)``."""
        return adaptive_conv2d(
            x,
            self.weight,
            style,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            demodulate=self.demodulate,
            eps=self.eps,
            impl=self.impl,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}, "
            f"demodulate={self.demodulate}, impl={self.impl!r}"
        )
