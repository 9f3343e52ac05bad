"""AFEBlock: the Adaptive Feature Extractor block, in NCHW and token ``(B, L, C)`` form."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (
    check_channels,
    check_int,
    check_matching,
    check_min_size,
    check_pair,
    check_positive_float,
    check_tensor,
    check_token_count,
)
from ..functional import squeeze_excitation
from ..scale import ScaleCondition, ScaleLike
from .adaptive_conv import AdaptiveConv2d
from .norm import LayerNorm2d

__all__ = ["AFEBlock", "AFETokenBlock", "LayerNorm2d", "SqueezeExcitation"]


class SqueezeExcitation(nn.Module):
    """Channel gating ``x * sigmoid(W2 silu(W1 mean_hw(x)))`` with bias-free ``W1``, ``W2``.

    Args:
        channels: ``C``.
        reduced: width of the bottleneck.

    Shape:
        - x: :math:`(B, C, H, W)`; output: same.
    """

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, reduced, bias=False)
        self.fc2 = nn.Linear(reduced, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_excitation(x, self.fc1.weight, self.fc2.weight)


class AFEBlock(nn.Module):
    r"""Adaptive Feature Extractor block (EQSR): a scale-aware residual block for CNN bodies.

    With ``a = pw_in(x)`` (1x1, ``dim -> hidden``):

    .. code-block:: text

        a   = a + AdaptiveConv2d(GELU(LN(a)), scale)      # kxk, scale-modulated, residual
        out = res + pw_out(SE(GELU(LN(a))))               # 1x1, hidden -> dim, residual

    where ``res`` is the block input ``x`` (``residual="input"``, default) or the hidden
    stream ``a`` (``residual="hidden"``, which is how the official ModMBConv is wired and needs
    ``hidden == dim``). LayerNorms normalise over channels per pixel; GELU is exact; SE is
    :class:`SqueezeExcitation` with ``int(se_ratio * hidden)`` bottleneck channels.

    **Identity at initialisation.** ``identity_init=True`` (only with ``residual="input"``)
    zero-initialises ``pw_out``, so ``block(x, r) == x`` exactly at every scale until trained;
    inserting the block into a pretrained body leaves the body's function unchanged, and the
    zero layer still receives gradients. The AdaptiveConv2d inside always starts with a
    zero-initialised scale mapping.

    Args:
        dim: channels ``C`` of the input and output.
        hidden: hidden width (default ``dim``).
        kernel_size: kernel of the AdaptiveConv2d (odd).
        num_freqs: frequencies of its scale encoding.
        se_ratio: SE bottleneck ratio.
        demodulate: StyleGAN2 demodulation inside the AdaptiveConv2d.
        residual: ``"input"`` or ``"hidden"``, see above (``skip``, its former name, is
            accepted: ``skip`` now only means a retrofitted model's image skip).
        identity_init: start as the exact identity (``residual="input"`` only).
        encoding: scale-encoding module for the AdaptiveConv2d (default
            ``ScaleEncoding(num_freqs)``; see :class:`~scaleeq.AdaptiveConv2d`).

    Shape:
        - x: :math:`(B, C, H, W)`
        - scale: number, pair, or tensor ``(B,)`` / ``(B, 2)``; omitted, the active
          :func:`~scaleeq.scale_context` is used (not under activation checkpointing, whose
          recomputation runs after the ``with`` block: pass the scale).
        - output: :math:`(B, C, H, W)`

    Example:
        >>> blk = AFEBlock(32, identity_init=True)
        >>> x = torch.randn(2, 32, 12, 12)
        >>> torch.equal(blk(x, scale=3.5), x)
        True
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int | None = None,
        kernel_size: int = 3,
        num_freqs: int = 8,
        se_ratio: float = 0.25,
        demodulate: bool = True,
        residual: Literal["input", "hidden"] = "input",
        identity_init: bool = False,
        encoding: nn.Module | None = None,
        skip: Literal["input", "hidden"] | None = None,
    ) -> None:
        super().__init__()
        check_int(dim, "dim")
        hidden = check_int(dim if hidden is None else hidden, "hidden")
        if skip is not None:  # the former name of `residual`
            if residual != "input" and residual != skip:
                raise TypeError("give residual= or its former name skip=, not both")
            residual = skip
        if residual not in ("input", "hidden"):
            raise ValueError(f"residual must be 'input' or 'hidden', got {residual!r}")
        if residual == "hidden" and hidden != dim:
            raise ValueError(
                f"residual='hidden' needs hidden == dim, got hidden={hidden}, dim={dim}"
            )
        if identity_init and residual != "input":
            raise ValueError(
                "identity_init=True needs residual='input' (the hidden residual is not an identity)"
            )
        if check_positive_float(se_ratio, "se_ratio") > 1:
            raise ValueError(f"se_ratio must be in (0, 1], got {se_ratio!r}")
        self.dim = dim
        self.hidden = hidden
        self.residual = residual
        self.pw_in = nn.Conv2d(dim, hidden, 1)
        self.norm1 = LayerNorm2d(hidden)
        self.conv = AdaptiveConv2d(
            hidden,
            hidden,
            kernel_size,
            bias=False,
            num_freqs=num_freqs,
            demodulate=demodulate,
            encoding=encoding,
        )
        self.norm2 = LayerNorm2d(hidden)
        self.se = SqueezeExcitation(hidden, max(1, int(se_ratio * hidden)))
        self.pw_out = nn.Conv2d(hidden, dim, 1)
        self.identity_init = bool(identity_init)
        if identity_init:
            nn.init.zeros_(self.pw_out.weight)
            nn.init.zeros_(self.pw_out.bias)

    def forward(self, x: torch.Tensor, scale: ScaleLike | None = None) -> torch.Tensor:
        """``x`` ``(B, C, H, W)`` at ``scale`` (any scale argument with 1 or ``B`` samples;
        ``None``: the active :func:`~scaleeq.scale_context`). Given a model's
        :class:`~scaleeq.scale.ScaleCondition`, ``x`` is trusted (the model checked its input)."""
        if not isinstance(scale, ScaleCondition):
            check_tensor(x, "x", ndim=4, layout="(B, C, H, W)")
            check_channels(x, "x", self.dim)
            check_matching(x, "x", self.pw_in.weight)
            check_min_size(x, "x")
        a = self.pw_in(x)
        a = a + self.conv(F.gelu(self.norm1(a)), scale)
        out = self.pw_out(self.se(F.gelu(self.norm2(a))))
        return (x if self.residual == "input" else a) + out

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, hidden={self.hidden}, residual={self.residual!r}, "
            f"identity_init={self.identity_init}"
        )


class AFETokenBlock(AFEBlock):
    """:class:`AFEBlock` for token sequences, as used inside Swin/HAT-style residual groups.

    Same parameters and state dict as :class:`AFEBlock`; ``forward(x, x_size, scale)`` takes
    tokens in row-major pixel order, so it drops in where a Swin block is called as
    ``blk(x, x_size)``.

    Shape:
        - x: :math:`(B, L, C)` with ``L = H * W``
        - x_size: ``(H, W)``
        - output: :math:`(B, L, C)`
    """

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, x_size: tuple[int, int], scale: ScaleLike | None = None
    ) -> torch.Tensor:
        if isinstance(scale, ScaleCondition):  # a model's call: x and x_size are trusted
            h, w = x_size
        else:
            check_tensor(x, "x", ndim=3, layout="(B, L, C)")
            if any(isinstance(v, torch.SymInt) for v in x_size):  # symbolic sizes (export)
                h, w = x_size
            else:
                h, w = check_pair(tuple(int(v) for v in x_size), "x_size")
            check_token_count(x, "x", (h, w))
            check_channels(x, "x", self.dim, dim=2)
        img = x.transpose(1, 2).reshape(x.shape[0], self.dim, h, w)
        return super().forward(img, scale).flatten(2).transpose(1, 2)
