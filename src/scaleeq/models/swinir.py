"""SwinIR for classical super-resolution (Liang et al., ICCVW 2021), written from the paper.

Attribute names and forward logic follow the official SwinIR layout, so official checkpoints
load into it (``strict=True``; their derived ``relative_position_index`` / ``attn_mask`` buffers
are accepted and ignored) and :func:`scaleeq.retrofit` recognises it by structure.
Masks are computed for the runtime size, so there is no ``img_size`` argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_channels, check_int, check_tensor
from .._config import store_config
from ._common import PixelShuffleUpsample, preset_arguments
from .swin import SwinStage, SwinTrunk

__all__ = ["SwinIR"]

Upsampler = Literal["pixelshuffle", "pixelshuffledirect", "nearest+conv"]


class SwinIR(SwinTrunk):
    """SwinIR: residual Swin transformer groups (RSTB) on shallow conv features, then a tail.

    ``forward(x)``: pad ``x`` to a multiple of ``window_size`` (reflect), normalise
    ``(x - mean) * img_range``, ``f = conv_first(x)``,
    ``f = conv_after_body(forward_features(f)) + f`` (the :class:`~scaleeq.models.swin.SwinTrunk`
    it shares with EQSR), upsample by the tail, undo the normalisation and crop to
    ``(H * upscale, W * upscale)``. ``set_grad_checkpointing()`` runs each group under
    ``torch.utils.checkpoint`` while training.

    Tails (``upsampler``):

    - ``"pixelshuffle"`` (classical): ``conv_before_upsample`` (3x3 to ``num_feat`` + LeakyReLU),
      ``upsample`` (conv + PixelShuffle stages), ``conv_last``;
    - ``"pixelshuffledirect"`` (lightweight): ``upsample`` = one 3x3 conv + PixelShuffle;
    - ``"nearest+conv"`` (real-world, x4 only): ``conv_before_upsample``, two nearest x2 steps
      each followed by ``conv_up1`` / ``conv_up2`` and LeakyReLU(0.2), ``conv_hr``,
      ``conv_last``.

    Args:
        upscale: integer upscaling factor.
        in_chans: image channels (the mean is the DIV2K RGB mean for 3, else 0).
        embed_dim: token channels ``C``.
        depths: Swin blocks per residual group.
        num_heads: attention heads per group.
        window_size: attention window side.
        mlp_ratio: MLP width over ``C``.
        qkv_bias: bias in the qkv projections.
        qk_scale: attention logit scale (default ``head_dim^-0.5``).
        drop_path_rate: stochastic depth, rising linearly to this over all blocks.
        patch_norm: LayerNorm after the patch embedding.
        img_range: pixel range multiplier applied after subtracting the mean.
        upsampler: ``"pixelshuffle"``, ``"pixelshuffledirect"`` or ``"nearest+conv"``.
        resi_connection: ``"1conv"`` or ``"3conv"`` (see ``scaleeq.models.swin.residual_conv``).
        num_feat: tail width for ``"pixelshuffle"`` and ``"nearest+conv"``.

    The constructor arguments are kept in ``self.config``: ``SwinIR(**model.config)`` rebuilds
    the architecture.

    Shape:
        - x: :math:`(B, C_{in}, H, W)`, any ``H, W >= 1``
        - output: :math:`(B, C_{in}, H \\cdot r, W \\cdot r)`

    Example:
        >>> net = SwinIR.from_preset("tiny", upscale=2)
        >>> net(torch.rand(1, 3, 7, 9)).shape
        torch.Size([1, 3, 14, 18])
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "classical": dict(
            embed_dim=180,
            depths=(6, 6, 6, 6, 6, 6),
            num_heads=(6, 6, 6, 6, 6, 6),
            window_size=8,
            mlp_ratio=2.0,
            upsampler="pixelshuffle",
        ),
        "light": dict(
            embed_dim=60,
            depths=(6, 6, 6, 6),
            num_heads=(6, 6, 6, 6),
            window_size=8,
            mlp_ratio=2.0,
            upsampler="pixelshuffledirect",
        ),
        "tiny": dict(
            embed_dim=16,
            depths=(2, 2),
            num_heads=(2, 2),
            window_size=4,
            mlp_ratio=2.0,
            upsampler="pixelshuffle",
            num_feat=16,
        ),
    }

    @store_config
    def __init__(
        self,
        *,
        upscale: int = 2,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_path_rate: float = 0.1,
        patch_norm: bool = True,
        img_range: float = 1.0,
        upsampler: Upsampler = "pixelshuffle",
        resi_connection: str = "1conv",
        num_feat: int = 64,
    ) -> None:
        super().__init__()
        for name, value in (("upscale", upscale), ("num_feat", num_feat)):
            check_int(value, name)
        if upsampler not in ("pixelshuffle", "pixelshuffledirect", "nearest+conv"):
            raise ValueError(
                "upsampler must be 'pixelshuffle', 'pixelshuffledirect' or 'nearest+conv', "
                f"got {upsampler!r}"
            )
        if upsampler == "nearest+conv" and upscale != 4:
            raise ValueError(f"upsampler='nearest+conv' needs upscale=4, got {upscale}")

        self.upscale = upscale
        self.upsampler = upsampler
        self._build_trunk(
            in_chans=in_chans,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            img_range=img_range,
            patch_norm=patch_norm,
            drop_path_rate=drop_path_rate,
            make_stage=lambda depth, heads, rate: SwinStage(
                embed_dim,
                depth,
                heads,
                window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop_path=rate,
            ),
            resi_connection=resi_connection,
        )

        if upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(
                nn.Conv2d(embed_dim, upscale**2 * in_chans, 3, padding=1),
                nn.PixelShuffle(upscale),
            )
            return
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(embed_dim, num_feat, 3, padding=1), nn.LeakyReLU(inplace=True)
        )
        if upsampler == "pixelshuffle":
            self.upsample = PixelShuffleUpsample(upscale, num_feat)  # the one tail (as EDSR)
        else:
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.conv_last = nn.Conv2d(num_feat, in_chans, 3, padding=1)

    @classmethod
    def from_preset(cls, name: str, *, upscale: int, **overrides: Any) -> SwinIR:
        """Build a named configuration: ``"classical"`` (SwinIR-M: 180 channels, 6 groups of 6,
        window 8, pixel-shuffle tail), ``"light"`` (60 channels, 4 groups of 6, one-step
        pixel-shuffle tail) or ``"tiny"`` (16 channels, 2 groups of 2, window 4; for tests).
        ``overrides`` replace preset values.

        Raises:
            ValueError: unknown ``name``.
        """
        return cls(**preset_arguments(cls.PRESETS, name, {"upscale": upscale, **overrides}))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The transformer body: ``(B, C, H, W) -> (B, C, H, W)``, ``H, W`` multiples of the
        window size. (One argument, as in the official SwinIR: that is how
        :func:`scaleeq.retrofit` tells it from ATD's.)"""
        return super().forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", ndim=4, layout="(B, C, H, W)")
        check_channels(x, "x", self.mean.shape[1])
        h, w = x.shape[-2:]
        mean = self.mean.to(x.dtype)
        x = self._deep_features(x)
        if self.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        elif self.upsampler == "pixelshuffledirect":
            x = self.upsample(x)
        else:
            x = self.conv_before_upsample(x)
            x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")))
            x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")))
            x = self.conv_last(self.lrelu(self.conv_hr(x)))
        x = x / self.img_range + mean
        return x[:, :, : h * self.upscale, : w * self.upscale]
