"""SAFMN (``spandrel.architectures.SAFMN``): attention blocks over a conv head.

Layout: ``to_feat`` (3x3 conv), ``feats`` (an ``nn.Sequential`` of ``AttBlock``\\ s, each with
``safm`` and ``ccm``), ``to_img`` (conv + pixel shuffle, the tail).

**Cut point**: the input of ``to_img``, ``feats(f) + f`` with ``f = to_feat(x)``.

**AFE blocks**: the blocks are not grouped, so :func:`~.base.interleave`'s default applies
(one before every quarter of the blocks, or every ``afe_every`` blocks).

Nothing follows the tail: no global residual, no clamp, no padding.

**Export**: each SAFM layer pools level ``i`` to ``(h // 2**i, w // 2**i)`` with
``adaptive_max_pool2d`` and resizes it back with ``interpolate(mode="nearest")``; exported as
they are, both keep the traced sizes. :meth:`SAFMNAdapter.prepare_export` runs the export's copy
with :func:`adaptive_max_pool2d_traceable` and :func:`resize_nearest_traceable` instead: the same
pooling windows and source pixels as PyTorch's kernels (integer window bounds; float32 source
indices), written as index arithmetic on the symbolic sizes, so one graph takes every LR size.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from ...scale import ScaleCondition
from .base import Adapter, interleave, run_body

__all__ = ["SAFMNAdapter", "adaptive_max_pool2d_traceable", "resize_nearest_traceable"]


def _max_pool_axis(x: torch.Tensor, dim: int, bins: int, widest: int) -> torch.Tensor:
    """Adaptive max pooling of ``x`` along ``dim`` to ``bins`` bins: bin ``j`` covers
    ``[floor(j n / bins), ceil((j + 1) n / bins))`` of the ``n`` pixels (PyTorch's windows),
    at most ``widest`` wide."""
    n = x.shape[dim]
    j = torch.arange(bins, device=x.device)
    start = (j * n) // bins
    stop = ((j + 1) * n + bins - 1) // bins
    index = start[:, None] + torch.arange(widest, device=x.device)  # (bins, widest)
    outside = index >= stop[:, None]
    picked = x.index_select(dim, index.clamp(max=n - 1).reshape(-1))
    shape = list(x.shape)
    shape[dim : dim + 1] = [bins, widest]
    picked = picked.reshape(shape)
    mask_shape = [1] * len(shape)
    mask_shape[dim : dim + 2] = [bins, widest]
    picked = picked.masked_fill(outside.reshape(mask_shape), float("-inf"))
    return picked.amax(dim + 1)


def adaptive_max_pool2d_traceable(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``F.adaptive_max_pool2d(x, (h // factor, w // factor))`` for ``x`` ``(B, C, h, w)``
    with ``h, w >= factor``, as index arithmetic that ``torch.export`` keeps symbolic in ``h``
    and ``w``. Max pooling is separable, so rows then columns; a bin spans fewer than
    ``2 * factor + 1`` pixels (``n / (n // factor) < 2 * factor``)."""
    h, w = x.shape[-2:]
    widest = 2 * factor + 1
    x = _max_pool_axis(x, 2, h // factor, widest)
    return _max_pool_axis(x, 3, w // factor, widest)


def _nearest_source(n_out: int, n_in: int, like: torch.Tensor) -> torch.Tensor:
    """PyTorch's nearest source pixels for ``n_in`` -> ``n_out`` (output size given):
    ``min(floor(i * (float32(n_in) / n_out)), n_in - 1)``, in float32 as its kernel."""
    ratio = torch.full((), n_in, dtype=torch.float32, device=like.device) / n_out
    i = torch.arange(n_out, device=like.device, dtype=torch.float32)
    return torch.floor(i * ratio).long().clamp(max=n_in - 1)


def resize_nearest_traceable(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size=size, mode="nearest")`` for ``x`` ``(B, C, h, w)``, as index
    arithmetic that ``torch.export`` keeps symbolic in the sizes."""
    x = x.index_select(2, _nearest_source(size[0], x.shape[2], x))
    return x.index_select(3, _nearest_source(size[1], x.shape[3], x))


def _safm_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """spandrel's ``SAFM.forward`` with the traceable pooling and resizing (same outputs)."""
    h, w = x.shape[-2:]
    parts = x.chunk(self.n_levels, dim=1)
    out = [self.mfr[0](parts[0])]
    for i in range(1, self.n_levels):
        s = self.mfr[i](adaptive_max_pool2d_traceable(parts[i], 2**i))
        out.append(resize_nearest_traceable(s, (h, w)))
    return self.act(self.aggr(torch.cat(out, dim=1))) * x


class SAFMNAdapter(Adapter):
    name = "safmn"
    family = "SAFMN"
    architectures = ("SAFMN",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        feats = getattr(model, "feats", None)
        tail = getattr(model, "to_img", None)
        return (
            isinstance(getattr(model, "to_feat", None), nn.Conv2d)
            and isinstance(feats, nn.Sequential)
            and len(feats) > 0
            and all(hasattr(b, "safm") and hasattr(b, "ccm") for b in feats)
            and isinstance(tail, nn.Sequential)
            and any(isinstance(m, nn.PixelShuffle) for m in tail)
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(model.to_feat.out_channels)
        if settings["afe"] == "per_group":
            backbone.feats = interleave(
                model.feats, channels, settings["afe_every"], len(model.feats)
            )
        del backbone._modules["to_img"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.to_img

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.to_feat

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        f = backbone.to_feat(lr)
        return run_body(backbone.feats, f, scale) + f

    def export_trace_size(self, backbone: nn.Module) -> tuple[int, int]:
        """``2**n_levels`` pixels a side: every pooled level then has at least 2 bins a side
        (a trace that sees a size of 1 keeps it as a constant in the graph)."""
        levels = max((int(m.n_levels) for m in _safm_layers(backbone)), default=1)
        return (2**levels, 2**levels)

    def prepare_export(self, backbone: nn.Module) -> None:
        """Run each SAFM layer with :func:`adaptive_max_pool2d_traceable` and
        :func:`resize_nearest_traceable` (the module doc): one graph for every LR size."""
        for m in _safm_layers(backbone):
            m.forward = types.MethodType(_safm_forward, m)


def _safm_layers(backbone: nn.Module) -> list[nn.Module]:
    """spandrel's ``SAFM`` layers of the body (per-level ``mfr`` convs, ``aggr``)."""
    return [m for m in backbone.modules() if hasattr(m, "mfr") and hasattr(m, "n_levels")]


ADAPTERS = (SAFMNAdapter,)
