"""EQSR: the paper's full arbitrary-scale model (CVPR 2023), written from the paper.

A HAT-style transformer backbone whose residual groups each start with a scale-aware AFE
block, and a Neural Kriging upsampler as the tail:

.. code-block:: text

    lr -> pad to the window -> (x - mean) * img_range -> conv_first = shallow
       -> tokens -> LN -> [ group_g: x + tokens(conv3x3(image(
                                AFE(r) -> WA -> shifted WA -> ... -> OCAB))) ]_g -> LN
       -> conv_after_body(.) + shallow -> crop to the LR size = feat        (features)
    feat -> NeuralKrigingUpsampler(size / scale / window) / img_range + mean  (render)

``official=True`` builds the configuration of the official research code, for its
checkpoints (see :func:`scaleeq.models.load_official_eqsr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from .._checks import check_channels, check_matching, check_tensor
from .._config import store_config
from ..arbitrary import ArbitraryScaleModel
from ..geometry import RenderPlan
from ..layers.afe import AFETokenBlock
from ..layers.kriging import NeuralKrigingUpsampler
from ..layers.official import OfficialCellEncoding
from ..ops.padding import crop_padding
from ..scale import ScaleCondition, ScaleLike
from ._common import preset_arguments
from .swin import OverlapCrossAttentionBlock, SwinTrunk, shifted_window_blocks

__all__ = ["EQSR", "OfficialCellEncoding"]


class EQSRStage(nn.Module):
    """The token stage of one EQSR residual group (the group's ``residual_group``).

    ``afe`` (:class:`~scaleeq.AFETokenBlock`, official ModMBConv wiring) -> ``blocks``
    (window attention, shifts alternating 0 / ``ws // 2``) -> ``overlap_attn`` (OCAB).

    Shape:
        - x: ``(B, H * W, C)``, ``x_size = (H, W)``; scale: any scale argument with 1 or B
          samples (what the AFE block is conditioned on); output: same as x.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        *,
        overlap_ratio: float,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: float | None,
        drop_path: list[float],
        num_freqs: int,
        official: bool,
    ) -> None:
        super().__init__()
        # official: the 81-value cell code instead of the scale encoding
        encoding = OfficialCellEncoding() if official else None
        self.afe = AFETokenBlock(dim, residual="hidden", num_freqs=num_freqs, encoding=encoding)
        self.blocks = shifted_window_blocks(  # the AFE block took the group's first rate
            dim,
            num_heads,
            window_size,
            depth - 1,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop_path=drop_path[1:],
        )
        self.overlap_attn = OverlapCrossAttentionBlock(
            dim,
            num_heads,
            window_size,
            overlap_ratio=overlap_ratio,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
        )

    def forward(
        self, x: torch.Tensor, x_size: tuple[int, int], scale: ScaleLike | None = None
    ) -> torch.Tensor:
        x = self.afe(x, x_size, scale)
        for blk in self.blocks:
            x = blk(x, x_size)
        return self.overlap_attn(x, x_size)


class EQSR(ArbitraryScaleModel, SwinTrunk):
    """EQSR: HAT-style backbone with AFE blocks and a Neural Kriging upsampler (any scale).

    Each of the ``len(depths)`` residual groups holds ``depth`` blocks before its OCAB: one AFE
    block then ``depth - 1`` window-attention blocks (the official counting), followed by a
    3x3 conv and the group residual. The trunk around the groups is the
    :class:`~scaleeq.models.swin.SwinTrunk` that :class:`~scaleeq.models.SwinIR` uses too; the
    interface is :class:`~scaleeq.arbitrary.ArbitraryScaleModel`'s, like the retrofitted
    models':

    - ``features(lr, scale) -> (B, C, h, w)``: the LR feature map fed to the upsampler
      (``conv_after_body(body) + conv_first(x)`` on the window-padded input, cropped back to
      the unpadded LR size);
    - ``render(feat, *, scale=None, size=None, window=None, plan=None) -> (B, C_in, H, W)``:
      the upsampler's output with the input normalisation undone (no ``window`` in official
      mode, whose channel attention reads the whole output);
    - ``forward(lr, *, scale=None, size=None, window=None, plan=None)`` =
      ``render(features(lr, r), ...)`` with one plan: its ``scale`` (the requested ``r``)
      conditions the AFE blocks, and the same plan drives the upsampler;
    - ``forward_features(x, cond)``: the transformer body on a padded, normalised, embedded map;
    - ``set_grad_checkpointing(enable=True, *, use_reentrant=False)``: each residual group (its
      AFE block included) under ``torch.utils.checkpoint`` while training.

    Scales follow scaleeq's scale argument (number, ``(r_h, r_w)``, tensor ``(B,)`` /
    ``(B, 2)``); per-sample scales with different output sizes need a ``window``. The AFE
    blocks are conditioned on ``r`` on both axes.

    **Official mode** (``official=True``), for checkpoints of the official code: the AFE blocks
    are conditioned on the official cell code (:class:`OfficialCellEncoding` of
    ``2 / round(h * r_h)``: height only, and dependent on the LR size, not just on ``r``) and
    the tail is :meth:`NeuralKrigingUpsampler.official` (whole renders only). ``num_freqs``,
    ``upsampler_hidden`` and ``upsampler_blocks`` are then not used.

    Args:
        in_chans: image channels (the mean is the DIV2K RGB mean for 3, else 0).
        embed_dim: token channels ``C``.
        depths: blocks per residual group (AFE + window attention), each >= 1.
        num_heads: attention heads per group.
        window_size: attention window side.
        overlap_ratio: OCAB key/value patch enlargement.
        mlp_ratio: MLP width over ``C``.
        qkv_bias: bias in the qkv projections.
        qk_scale: attention logit scale (default ``head_dim^-0.5``).
        drop_path_rate: stochastic depth, rising linearly to this over all blocks.
        patch_norm: LayerNorm after the patch embedding.
        img_range: pixel range multiplier applied after subtracting the mean.
        num_freqs: frequencies of the AFE scale encoding and the upsampler's offset encoding.
        upsampler_hidden: latent width of the upsampler (256 in the paper).
        upsampler_blocks: kriging blocks of the upsampler.
        backend: aggregation backend of the upsampler.
        official: official-checkpoint compatibility mode (see above).

    The constructor arguments are kept in ``self.config``: ``EQSR(**model.config)`` rebuilds
    the architecture.

    Shape:
        - lr: :math:`(B, C_{in}, h, w)`, any ``h, w >= 1``
        - output: :math:`(B, C_{in}, H, W)` with ``H = round(h r_h)``, ``W = round(w r_w)`` or
          ``size``; or the window's ``(height, width)``.

    Example:
        >>> net = EQSR.from_preset("tiny")
        >>> net(torch.rand(1, 3, 7, 9), scale=2.5).shape
        torch.Size([1, 3, 18, 23])
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": dict(
            embed_dim=180,
            depths=(6, 6, 6, 6, 6, 6),
            num_heads=(6, 6, 6, 6, 6, 6),
            window_size=16,
            mlp_ratio=2.0,
            upsampler_hidden=256,
            upsampler_blocks=2,
        ),
        "light": dict(
            embed_dim=60,
            depths=(6, 6, 6, 6),
            num_heads=(6, 6, 6, 6),
            window_size=8,
            mlp_ratio=2.0,
            upsampler_hidden=64,
            upsampler_blocks=2,
        ),
        "tiny": dict(
            embed_dim=16,
            depths=(3, 3),
            num_heads=(2, 2),
            window_size=4,
            mlp_ratio=2.0,
            upsampler_hidden=16,
            upsampler_blocks=1,
        ),
    }

    @store_config
    def __init__(
        self,
        *,
        in_chans: int = 3,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 16,
        overlap_ratio: float = 0.5,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_path_rate: float = 0.1,
        patch_norm: bool = True,
        img_range: float = 1.0,
        num_freqs: int = 8,
        upsampler_hidden: int = 256,
        upsampler_blocks: int = 2,
        backend: str = "auto",
        official: bool = False,
    ) -> None:
        super().__init__()
        self.official = bool(official)
        self._build_trunk(
            in_chans=in_chans,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            img_range=img_range,
            patch_norm=patch_norm,
            drop_path_rate=drop_path_rate,
            make_stage=lambda depth, heads, rate: EQSRStage(
                embed_dim,
                depth,
                heads,
                window_size,
                overlap_ratio=overlap_ratio,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop_path=rate,
                num_freqs=num_freqs,
                official=official,
            ),
        )
        if official:
            self.upsampler = NeuralKrigingUpsampler.official(embed_dim, in_chans, backend=backend)
        else:
            self.upsampler = NeuralKrigingUpsampler(
                embed_dim,
                in_chans,
                hidden=upsampler_hidden,
                blocks=upsampler_blocks,
                num_freqs=num_freqs,
                backend=backend,
            )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> EQSR:
        """Build a named configuration; ``overrides`` replace preset values.

        - ``"paper"``: the HAT backbone of the paper (180 channels, 6 groups of depth 6,
          6 heads, window 16), upsampler latent 256 with 2 blocks;
        - ``"light"``: 60 channels, 4 groups of depth 6, window 8, upsampler latent 64;
        - ``"tiny"``: 16 channels, 2 groups of depth 3 (AFE, WA, shifted WA, OCAB), window 4,
          upsampler latent 16 with 1 block; for tests.

        Raises:
            ValueError: unknown ``name``.
        """
        return cls(**preset_arguments(cls.PRESETS, name, overrides))

    def _condition(self, r: torch.Tensor, sizes: torch.Tensor) -> ScaleCondition:
        """What the AFE blocks see, from the parsed scale ``r`` ``(N, 2)`` and the output
        sizes ``(N, 2)`` it gives: ``r`` itself, or in official mode the cell ``2 / H``
        (both columns; only the first is read)."""
        return ScaleCondition(OfficialCellEncoding.cells(sizes, r.dtype) if self.official else r)

    @property
    def _condition_reads_sizes(self) -> bool:  # the official cell is 2 / H
        return self.official

    def _check_lr(self, lr: torch.Tensor) -> None:
        check_tensor(lr, "lr", ndim=4, layout="(B, C, h, w)")
        check_channels(lr, "lr", self.mean.shape[1])
        check_matching(lr, "lr", self.conv_first.weight)

    def _features(self, lr: torch.Tensor, cond: ScaleCondition) -> torch.Tensor:
        """:meth:`features` of a checked ``lr`` at a parsed condition: the trunk's
        ``conv_after_body(body) + shallow``, cropped to the LR size."""
        return crop_padding(self._deep_features(lr, cond), (lr.shape[-2], lr.shape[-1]))

    def _render(self, feat: torch.Tensor, plan: RenderPlan) -> torch.Tensor:
        out = self.upsampler(feat, plan=plan)
        return out / self.img_range + self.mean.to(out.dtype)
