"""IPT (Image Processing Transformer), as spandrel ships it (``spandrel.architectures.IPT``):
the super-resolution path only.

IPT is multi-task: ``head`` and ``tail`` are ``nn.ModuleList`` s with one entry per task scale
(``model.scale``, e.g. ``[2, 3, 4, 1, 1, 1]`` for the pretrained multi-task model: SR x2/x3/x4,
then denoising / deraining at x1), selected by an index that also picks the task's row of the
body's ``query_embed``. The adapter retrofits **the SR path of the largest scale** (the one
spandrel's descriptor runs) and drops every other head and tail; a model whose scales are all 1
(denoising / deraining only) has no SR path and is refused.

Layout: ``sub_mean`` / ``add_mean`` (1x1 convs: the input is in ``[0, rgb_range]``),
``head[i]`` (conv + 2 residual blocks), ``body`` (a ViT over ``patch_size`` x ``patch_size``
inputs: ``patch_dim`` x ``patch_dim`` patches as tokens, an encoder and a decoder of
``num_layers`` layers each), ``tail[i]`` (pixel-shuffle upsampler + conv); forward
``tail[i](body(head[i](sub_mean(x))) + head[i](sub_mean(x)))`` then ``add_mean``.

**Cut point:** ``body(x) + x`` with ``x = head[i](sub_mean(lr * rgb_range))``, the input of
``tail[i]``.

**Input size.** IPT's body only takes ``patch_size`` x ``patch_size`` inputs (its position
embeddings and decoder queries are per patch of that grid); spandrel runs larger images through
overlapping crops (``forward_chop``). The adapter does the same on the feature map: an image of
exactly ``patch_size`` is one crop (the network's own features, which
:func:`~scaleeq.retrofit.adapters.base.check_cut` verifies); any other size is padded at the
bottom / right by edge replication to ``patch_size + k * patch_size // 4``, cut into crops at a
stride of ``patch_size // 4`` (spandrel's overlap), each crop runs through the head and the
body, and the crops' features are averaged where they overlap, then cropped to the input size.

**AFE blocks:** two identity-at-init :class:`~scaleeq.AFEBlock` s (NCHW, ``n_feats`` wide) at
the body's two group boundaries: on the head's map entering the body, and on the encoder's
output entering the decoder (tokens folded back to the map, and unfolded again: an exact
permutation). :class:`IPTBody` holds them and runs the body's forward with the scale.

Not carried over: the other tasks' heads / tails; no global residual after the tail.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..._activation_checkpoint import maybe_checkpoint
from ...layers.afe import AFEBlock
from ...ops.coords import ceil_div
from ...scale import ScaleCondition
from .base import Adapter
from .craft import set_wrapper_checkpointing

__all__ = ["IPTAdapter", "IPTBody"]

_REQUIRED = ("sub_mean", "add_mean", "head", "body", "tail", "scale", "rgb_range", "patch_size")


class IPTBody(nn.Module):
    """IPT's ViT body (``vit``, shared with the network) run with the scale: AFE block
    ``afe[0]`` on the map entering the body, ``afe[1]`` on the encoder's output (folded to the
    map) entering the decoder.

    ``forward(x, query_idx, scale)``: ``x`` ``(B, n_feats, P, P)``; returns the body's map of
    the same shape. ``afe`` empty (``afe="none"``): the body's own forward. With
    ``checkpointing`` set, the body runs under activation checkpointing while gradients are
    enabled.
    """

    def __init__(self, vit: nn.Module, afe: nn.ModuleList) -> None:
        super().__init__()
        self.vit = vit
        self.afe = afe
        self.checkpointing: str | None = None

    def _tokens(self, m: torch.Tensor) -> torch.Tensor:
        """``(B, C, P, P)`` -> ``(L, B, E)`` tokens (non-overlapping patches, as the ViT)."""
        pd = int(self.vit.patch_dim)
        return F.unfold(m, pd, stride=pd).permute(2, 0, 1)

    def _map(self, t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``(L, B, E)`` tokens -> ``(B, C, P, P)`` map (the inverse of :meth:`_tokens`)."""
        pd = int(self.vit.patch_dim)
        return F.fold(t.permute(1, 2, 0), size, pd, stride=pd)

    def _run(self, x: torch.Tensor, query_idx: int, scale: ScaleCondition) -> torch.Tensor:
        vit = self.vit
        size = (x.shape[2], x.shape[3])
        if len(self.afe):
            x = self.afe[0](x, scale)
        t = self._tokens(x)
        query = None
        if vit.mlp:
            t = vit.dropout_layer1(vit.linear_encoding(t)) + t
            e = int(vit.embedding_dim)
            query = vit.query_embed.weight[query_idx].view(-1, 1, e).repeat(1, t.size(1), 1)
        pos = None
        if vit.no_pos:
            t = vit.encoder(t)
        else:
            pos = vit.position_encoding(t).transpose(0, 1)
            t = vit.encoder(t, pos=pos) if vit.pos_every else vit.encoder(t + pos)
            if not vit.pos_every:
                pos = None
        if len(self.afe) > 1:
            t = self._tokens(self.afe[1](self._map(t, size), scale))
        t = vit.decoder(t, t, pos=pos, query_pos=query)
        if vit.mlp:
            t = vit.mlp_head(t) + t
        return self._map(t, size)

    def forward(self, x: torch.Tensor, query_idx: int, scale: ScaleCondition) -> torch.Tensor:
        return maybe_checkpoint(self._run, x, query_idx, scale, mode=self.checkpointing)


def sr_index(model: nn.Module) -> int:
    """The task index of IPT's SR path: the largest scale (as spandrel's descriptor runs it)."""
    scales = [int(s) for s in model.scale]
    return scales.index(max(scales))


class IPTAdapter(Adapter):
    name = "ipt"
    family = "IPT (SR path)"
    architectures = ("IPT",)

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        if not all(hasattr(model, a) for a in _REQUIRED):
            return False
        body = model.body
        return (
            isinstance(model.head, nn.ModuleList)
            and isinstance(model.tail, nn.ModuleList)
            and isinstance(model.sub_mean, nn.Conv2d)
            and all(isinstance(getattr(body, n, None), nn.Module) for n in ("encoder", "decoder"))
            and hasattr(body, "patch_dim")
        )

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict) -> int | None:
        self.index = sr_index(model)
        if int(model.scale[self.index]) < 2:
            raise ValueError(
                f"this IPT model has no super-resolution path (task scales {list(model.scale)}); "
                "retrofit needs one"
            )
        self.pixel_range = float(model.rgb_range)
        head = model.head[self.index]
        channels = int(head[0].out_channels)
        afe = nn.ModuleList()
        if settings["afe"] == "per_group":
            afe = nn.ModuleList(AFEBlock(channels, identity_init=True) for _ in range(2))
        backbone.head = head
        backbone.body = IPTBody(model.body, afe)
        del backbone._modules["tail"]
        return channels

    def tail_module(self, model: nn.Module) -> nn.Module | None:
        return model.tail[sr_index(model)]

    def reference_model(self, model: nn.Module) -> nn.Module:
        """The model's forward runs the task ``scale_idx`` selects: a shallow clone runs ours."""
        index = sr_index(model)
        if int(model.scale_idx) == index:
            return model
        runner = copy.copy(model)
        runner.scale_idx = index
        return runner

    def export_trace_size(self, backbone: nn.Module) -> tuple[int, int]:
        """Past one crop on each axis: a trace at ``patch_size`` sees one crop and keeps that
        count (and so the input size) as a constant."""
        p = int(backbone.patch_size)
        s = max(1, p // 4)
        return (p + s + 1, p + 2 * s + 1)

    def probe_size(self, model: nn.Module) -> tuple[int, int]:
        p = int(model.patch_size)
        return (p, p)

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d | None:
        return backbone.sub_mean

    def model_input(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x * self.pixel_range

    def set_checkpointing(self, backbone: nn.Module, mode: str | None) -> int:
        count = set_wrapper_checkpointing(backbone, mode)
        for m in backbone.modules():
            if isinstance(m, IPTBody) and len(m.afe):
                m.checkpointing = mode
                count += 1
        return count

    def _crop_features(
        self, backbone: nn.Module, x: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        """Head and body on ``patch_size`` crops ``(N, 3, P, P)``: ``body(head(x)) + head(x)``."""
        x = backbone.head(x)
        return backbone.body(x, self.index, scale) + x

    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        x = backbone.sub_mean(lr * float(backbone.rgb_range))  # a new tensor
        b, c, h, w = x.shape
        p = int(backbone.patch_size)
        s = max(1, p // 4)
        # no branch on the size (one graph for every size): a patch_size image is one crop,
        # whose fold and division by a count of 1 give the crop's features unchanged
        hp = p + ceil_div(torch.sym_max(h - p, 0), s) * s
        wp = p + ceil_div(torch.sym_max(w - p, 0), s) * s
        x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
        crops = F.unfold(x, p, stride=s)  # (B, C * P * P, T)
        n = crops.shape[-1]
        crops = crops.transpose(1, 2).reshape(b * n, c, p, p)
        if scale.value.shape[0] == b and b > 1:  # per-sample scales: one row per crop
            scale = ScaleCondition(scale.value.repeat_interleave(n, dim=0))
        feat = self._crop_features(backbone, crops, scale)
        k = feat.shape[1]
        cols = feat.reshape(b, n, k * p * p).transpose(1, 2)
        total = F.fold(cols, (hp, wp), p, stride=s)
        ones = torch.ones(1, 1, hp, wp, dtype=feat.dtype, device=feat.device)
        count = F.fold(F.unfold(ones, p, stride=s), (hp, wp), p, stride=s)
        return (total / count)[:, :, :h, :w]

    def output_range(self, backbone: nn.Module) -> float:
        return float(backbone.rgb_range)

    def output(self, backbone: nn.Module, out: torch.Tensor) -> torch.Tensor:
        return backbone.add_mean(out) / float(backbone.rgb_range)


ADAPTERS = (IPTAdapter,)
