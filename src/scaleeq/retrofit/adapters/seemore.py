"""SeemoRe (``spandrel.architectures.SeemoRe``): mixture-of-experts residual groups.

Layout: ``mean`` (a plain tensor attribute, not a buffer), ``img_range``, ``conv_1`` (3x3
conv), ``body`` (an ``nn.ModuleList`` of ResGroups, each ``local_block`` + ``global_block``),
``norm`` (channels-first LayerNorm), ``conv_2``, ``upsampler`` (conv + pixel shuffle, the
tail). The forward maps the input to ``(x - mean) * img_range`` and the output back with
``out / img_range + mean``; the adapter's :meth:`~SeemoReAdapter.output` does the same.

**Cut point**: the input of ``upsampler``, ``conv_2(norm(body(f))) + f`` with
``f = conv_1((x - mean) * img_range)``.

**AFE blocks**: one before each ResGroup (every ``afe_every``-th with that setting).

No global residual, no clamp. In eval mode spandrel's MoE layer picks its experts with a
Python loop over the ``topk`` indices of one image's routing weights: its own forward fails on
a batch of more than one (the indices of the first sample index the others' weights). The
adapter runs a batch in eval mode one sample at a time, each routed by its own weights (in
training mode spandrel's layer weights every expert per sample, and the batch runs whole).

**Export**: that loop reads tensor values, which ``torch.export`` cannot trace.
:meth:`SeemoReAdapter.prepare_export` runs the export's copy with the weighted sum over every
expert that spandrel's own training-mode branch computes: unselected experts get a weight of
exactly 0, so a sample's output is the eval-mode one (up to the order of the additions where
``topk > 1``), and each sample is routed by its own weights. The calibration pools twice by 4,
so the trace runs at 32 x 32 LR pixels (two pooled pixels a side: a trace that sees one keeps
it as a constant); the graph takes LR sizes from 16 up, as the network does.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from ...scale import ScaleCondition
from .base import Adapter, interleave, run_body

__all__ = ["SeemoReAdapter"]

_WEIGHTED = "_scaleeq_weighted_experts"  # set on the export's copy by prepare_export


class SeemoReAdapter(Adapter):
    name = "seemore"
    family = "SeemoRe"
    architectures = ("SeemoRe",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        body = getattr(model, "body", None)
        return (
            isinstance(getattr(model, "conv_1", None), nn.Conv2d)
            and isinstance(getattr(model, "conv_2", None), nn.Conv2d)
            and isinstance(getattr(model, "norm", None), nn.Module)
            and isinstance(getattr(model, "upsampler", None), nn.Sequential)
            and isinstance(body, nn.ModuleList)
            and len(body) > 0
            and all(hasattr(g, "local_block") and hasattr(g, "global_block") for g in body)
            and hasattr(model, "mean")
            and hasattr(model, "img_range")
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int:
        channels = int(model.conv_1.out_channels)
        if settings["afe"] == "per_group":
            every = settings["afe_every"] or 1
            backbone.body = interleave(model.body, channels, every, len(model.body))
        del backbone._modules["upsampler"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module:
        return model.upsampler

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d:
        return backbone.conv_1

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        n = lr.shape[0]
        if n > 1 and not backbone.training and not getattr(backbone, _WEIGHTED, False):
            r = scale.value  # (1, 2) or one row per sample
            rows = [ScaleCondition(r[i : i + 1]) for i in range(n)] if len(r) > 1 else [scale] * n
            return torch.cat([self._features(backbone, lr[i : i + 1], rows[i]) for i in range(n)])
        return self._features(backbone, lr, scale)

    def _features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        f = backbone.conv_1((lr - torch.as_tensor(backbone.mean).to(lr)) * backbone.img_range)
        body = backbone.body
        if isinstance(body, nn.ModuleList):  # afe="none": the groups in order
            x = f
            for group in body:
                x = group(x)
        else:
            x = run_body(body, f, scale)
        return backbone.conv_2(backbone.norm(x)) + f

    def export_trace_size(self, backbone: nn.Module) -> tuple[int, int]:
        return (32, 32)

    def prepare_export(self, backbone: nn.Module) -> None:
        """Route with every expert weighted (the module doc): a graph without the loop over
        ``topk`` indices."""
        for m in backbone.modules():
            if hasattr(m, "experts") and hasattr(m, "gate") and hasattr(m, "num_expert"):
                m.forward = types.MethodType(_weighted_experts, m)
        setattr(backbone, _WEIGHTED, True)  # the batch then runs whole (per-sample routing)

    def output_range(self, backbone: nn.Module) -> float:
        return float(backbone.img_range)

    def output(self, backbone: nn.Module, out: torch.Tensor) -> torch.Tensor:
        return out / backbone.img_range + torch.as_tensor(backbone.mean).to(out)


def _weighted_experts(self: nn.Module, inputs: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """spandrel's ``MoELayer`` as its training-mode branch computes it: every expert, weighted
    by its routing weight where it is among the sample's ``topk``, else by 0."""
    weights = F.softmax(self.gate(inputs), dim=1, dtype=torch.float).to(inputs.dtype)
    top = torch.topk(weights, self.num_expert).indices
    kept = torch.zeros_like(weights).scatter(1, top, weights.gather(1, top))
    out = inputs.clone()
    for i, expert in enumerate(self.experts):
        out = out + expert(inputs, k) * kept[:, i : i + 1, None, None]
    return out


ADAPTERS = (SeemoReAdapter,)
