"""NeuralKrigingUpsampler: resample a feature map at arbitrary HR positions (EQSR's "DSF").

Pipeline for a region of the HR grid (the whole output, or a window plus its halo):

1. **Head** — each HR query takes its nearest LR feature and a frequency encoding of its offset
   from that pixel's centre; a 1x1 projection maps both to the latent width. The projection is
   split (feature part applied on the LR map before the gather, offset part per row and per
   column), which is exact and costs ``h*w`` instead of ``H*W`` matrix products.
2. **Blocks** — each: ``y = 1x1(LN(z))``; a data kernel ``K = 1x1(ReLU(3x3(y)))`` per pixel and
   channel group; the aggregation ``sum_j K_j R_j y(p + o_j)`` with the RBF distance kernel
   ``R``; ``z += 1x1(.)``; then ``z += FFN(LN(z))`` gated by channel attention.
3. **Tail** — ``1x1(act(z + z0))`` to the output channels (``z0`` the head output; ``act`` GELU
   by default, ReLU in the official configuration).

Only 1x1 ops and the ``k x k`` aggregation touch HR resolution, so cost is linear in output
pixels, and every spatial op has a bounded footprint: a window rendered with a halo of
``blocks * max(k, 3) // 2`` HR pixels, with positions outside the image zeroed before each
spatial op, equals the same crop of the full render.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (
    check_channels,
    check_int,
    check_matching,
    check_positive_float,
    check_tensor,
    tracing,
)
from .._config import store_config
from ..geometry import RenderPlan, lr_box, resolve_plan
from ..ops.aggregate import check_backend, distance_kernel
from ..ops.coords import AxisQueries, Window, axis_rounding
from ..scale import ScaleLike
from .kriging_block import ChannelAttention, KrigingBlock, OffsetEncoding, block_attention
from .latent import linear_to_nchw
from .official import OFFICIAL_UPSAMPLER

__all__ = ["KrigingBlock", "NeuralKrigingUpsampler", "OffsetEncoding"]


class NeuralKrigingUpsampler(nn.Module):
    """Neural Kriging upsampler: a feature map to an image at any scale (EQSR's DSF).

    Args:
        in_channels: channels ``C`` of the LR feature map.
        out_channels: output channels (3 for RGB).
        hidden: latent width (256 in the paper).
        blocks: number of :class:`KrigingBlock`.
        kernel_size: aggregation neighbourhood on the HR grid (odd).
        num_freqs: frequencies of the offset encoding.
        scale_mlp: follow the RBF distance kernel with a small per-pixel MLP over its ``k*k``
            taps (the paper's variant), initialised to the identity.
        backend: aggregation backend: ``"auto"`` (Triton for CUDA tensors when it is
            installed, else ``"shifted"``), ``"reference"``, ``"shifted"`` or ``"triton"``
            (``"lean"``, its former name, is accepted for ``"shifted"``).
        group_channels: channels per data-kernel group.
        channel_attention: ``"lr"`` (default, window-exact), ``"eca"`` (official) or ``"none"``
            (the variants of :mod:`scaleeq.layers.channel_attention`).
        lengthscale: initial RBF length-scale ``l`` in LR pixels (learnable).
        offset_unit: multiplier of offsets before encoding (2: official half-pixel units).
        rounding: nearest-pixel rule, ``"exact"`` or ``"official"`` (float32; the
            :class:`~scaleeq.ops.coords.AxisRounding` strategies, see
            :func:`~scaleeq.ops.coords.axis_queries`).
        block_act: apply ReLU after each block (official).
        activation: of the head and before the tail: ``"gelu"`` (default; no dead units, which
            ReLU here suffers from when training from scratch with large learning rates) or
            ``"relu"`` (official).

    Attributes:
        query_rounding: the :class:`~scaleeq.ops.coords.AxisRounding` that ``rounding`` names.
        attention: the :class:`~scaleeq.layers.channel_attention.BlockAttention` class that
            ``channel_attention`` names (each block's ``attn`` is one).
        window_exact: whether a window equals the same crop of the whole render, as the parts
            declare it (``attention.window_exact`` and ``query_rounding.window_exact``).
        default_window_pixels: the tile budget :func:`scaleeq.upscale` uses unless told
            otherwise: ``2**21 / hidden`` HR pixels (8192 at width 256), so that one float32
            latent tile is about 8 MiB and stays in cache; assign to change it.

    Shape:
        - feat: :math:`(B, C, h, w)`
        - scale: number, pair, or per-sample tensor ``(B,)`` / ``(B, 2)``; or ``size=(H, W)``.
          With per-sample scales whose output sizes differ, a ``window`` is required. Or
          ``plan=``: a :class:`~scaleeq.geometry.RenderPlan` made for this input.
        - window: ``(top, left, height, width)``; top/left ints or ``(B,)`` int tensors.
        - output: :math:`(B, out, H, W)`, or :math:`(B, out, height, width)` for a window.

    Example:
        >>> up = NeuralKrigingUpsampler(16, hidden=32, blocks=1)
        >>> up(torch.randn(2, 16, 10, 12), scale=2.5).shape
        torch.Size([2, 3, 25, 30])
        >>> feat = torch.randn(2, 16, 10, 12)
        >>> up(feat, scale=torch.tensor([2.0, 3.7]), window=(0, 4, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    @store_config
    def __init__(
        self,
        in_channels: int,
        out_channels: int = 3,
        *,
        hidden: int = 256,
        blocks: int = 2,
        kernel_size: int = 3,
        num_freqs: int = 8,
        scale_mlp: bool = False,
        backend: str = "auto",
        group_channels: int = 8,
        channel_attention: ChannelAttention = "lr",
        lengthscale: float = 1.5,
        offset_unit: float = 1.0,
        rounding: str = "exact",
        block_act: bool = False,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        if activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu', got {activation!r}")
        self.activation = activation
        self._act = F.gelu if activation == "gelu" else F.relu
        check_int(in_channels, "in_channels")
        check_int(out_channels, "out_channels")
        check_int(hidden, "hidden")
        check_int(blocks, "blocks", minimum=0)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd int >= 1, got {kernel_size!r}")
        backend = check_backend(backend)  # a former spelling ("lean") by its current name
        # the string settings (stored in config as given) to their strategies, once
        self.query_rounding = axis_rounding(rounding, "rounding")
        self.attention = block_attention(channel_attention, "channel_attention")
        check_positive_float(lengthscale, "lengthscale")
        check_positive_float(offset_unit, "offset_unit")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden = hidden
        self.kernel_size = kernel_size
        self.backend = backend
        self.rounding = rounding
        self.block_act = block_act
        self.channel_attention = channel_attention
        self.encoding = OffsetEncoding(num_freqs, offset_unit)
        e = self.encoding.out_features
        self.head_feat = nn.Linear(in_channels, hidden)
        self.head_y = nn.Linear(e, hidden, bias=False)
        self.head_x = nn.Linear(e, hidden, bias=False)
        self.log_lengthscale = nn.Parameter(torch.tensor(math.log(lengthscale)))
        kk = kernel_size**2
        self.scale_mlp = (
            nn.Sequential(nn.Conv2d(kk, 4 * kk, 1), nn.GELU(), nn.Conv2d(4 * kk, kk, 1))
            if scale_mlp
            else None
        )
        if self.scale_mlp is not None:  # identity at init: residual with a zero last layer
            nn.init.zeros_(self.scale_mlp[2].weight)
            nn.init.zeros_(self.scale_mlp[2].bias)
        self.blocks = nn.ModuleList(
            KrigingBlock(
                hidden,
                kernel_size=kernel_size,
                group_channels=group_channels,
                channel_attention=self.attention,
                context_dim=in_channels,
                backend=backend,
            )
            for _ in range(blocks)
        )
        self.tail = nn.Conv2d(hidden, out_channels, 1)
        self.halo = blocks * (max(kernel_size, 3) // 2)
        # tile budget scaleeq.upscale uses by default: one float32 latent tile of about 8 MiB,
        # so a block's working set (a few such tensors) stays in a server CPU's last-level cache
        self.default_window_pixels = max(1024, 2**21 // hidden)

    @classmethod
    def official(
        cls, in_channels: int, out_channels: int = 3, *, backend: str = "auto"
    ) -> NeuralKrigingUpsampler:
        """The official EQSR configuration (:data:`scaleeq.layers.official.OFFICIAL_UPSAMPLER`):
        latent 256, 2 blocks, 3x3, 32 groups of 8, 40 offset frequencies in half-pixel units,
        float32 nearest-pixel rounding, ECA channel attention without sigmoid, ReLU after each
        block, initial length-scale 3 half-pixels.

        ECA reads the spatial mean of the whole HR map, so this configuration renders whole
        outputs only (``window`` raises).
        """
        return cls(in_channels, out_channels, backend=backend, **OFFICIAL_UPSAMPLER)

    @property
    def window_exact(self) -> bool:
        """Whether windows equal crops of the full render, as the channel attention and the
        query rounding declare it (False for ``"eca"`` attention)."""
        return self.attention.window_exact and self.query_rounding.window_exact

    def _whole_only(self) -> str:
        """The settings that declare themselves not window-exact, for messages."""
        parts = []
        if not self.attention.window_exact:
            parts.append(
                f"channel_attention={self.channel_attention!r} ({self.attention.__name__})"
            )
        if not self.query_rounding.window_exact:
            parts.append(f"rounding={self.rounding!r} ({type(self.query_rounding).__name__})")
        return " and ".join(parts)

    @property
    def lengthscale(self) -> torch.Tensor:
        """The RBF length-scale ``l`` in LR pixels (stored as its log, so it stays > 0)."""
        return self.log_lengthscale.exp()

    def forward(
        self,
        feat: torch.Tensor,
        *,
        scale: ScaleLike | None = None,
        size: tuple[int, int] | None = None,
        window: Window | None = None,
        plan: RenderPlan | None = None,
    ) -> torch.Tensor:
        """Render ``feat`` ``(B, C, h, w)`` at ``scale`` / ``size`` (the window, if given), or
        as ``plan`` says (a :class:`~scaleeq.geometry.RenderPlan` for this input)."""
        check_tensor(feat, "feat", ndim=4, layout="(B, C, h, w)")
        check_channels(feat, "feat", self.in_channels)
        check_matching(feat, "feat", self.head_feat.weight)
        plan = resolve_plan(feat, scale=scale, size=size, window=window, plan=plan)
        if not plan.whole and not self.window_exact:
            raise ValueError(
                f"window rendering needs a window-exact upsampler; {self._whole_only()} is not "
                "(the official ECA reads the whole HR map): render whole outputs"
            )
        halo = 0 if plan.whole else self.halo
        m = self.kernel_size // 2
        # geometry on the CPU (small, exact int64), then moved: no device syncs
        qy, qx = plan.queries(halo + m, dtype=feat.dtype, rounding=self.query_rounding)
        box = lr_box(qy, qx, plan.lr_size)  # the LR rows / columns this region reads
        qy, qx = _to_device(qy, feat.device), _to_device(qx, feat.device)
        dist = self._distance(qy, qx)
        inner_y, inner_x = _crop(qy, m), _crop(qx, m)
        mask = None
        if halo > 0:
            valid = inner_y.valid[:, :, None] & inner_x.valid[:, None, :]
            if tracing() or not bool(valid.all()):
                mask = valid[:, None].to(feat.dtype)
        z0 = self._head(feat, inner_y, inner_x, box)  # (B, H, W, D), channels-last
        context = feat.mean(dim=(2, 3)) if self.attention.needs_context else None
        z = z0
        for blk in self.blocks:
            z = blk(z, dist, mask, context)
            if self.block_act:
                z = F.relu(z)
        z = z.add_(z0) if not torch.is_grad_enabled() else z + z0
        out = linear_to_nchw(self._act(z), self.tail)
        if halo:
            out = out[:, :, halo : halo + plan.height, halo : halo + plan.width]
        return out

    def _distance(self, qy: AxisQueries, qx: AxisQueries) -> torch.Tensor:
        dist = distance_kernel(qy, qx, self.lengthscale.to(qy.pos.dtype), self.kernel_size)
        if self.scale_mlp is not None:
            dist = dist + self.scale_mlp(dist)
        return dist

    def _head(
        self,
        feat: torch.Tensor,
        qy: AxisQueries,
        qx: AxisQueries,
        lr_box: tuple[int, int, int, int],
    ) -> torch.Tensor:
        """``act(W_f feat[nearest] + W_y enc(off_y) + W_x enc(off_x) + b)``, ``(B, ny, nx, D)``."""
        y0, y1, x0, x1 = lr_box  # the LR rows / columns the queries read, [y0, y1) x [x0, x1)
        # projected on the LR grid (only the rows / columns the queries read), then gathered
        proj = self.head_feat(feat[:, :, y0:y1, x0:x1].permute(0, 2, 3, 1))  # (B, h', w', D)
        bidx = torch.arange(feat.shape[0], device=feat.device)[:, None, None]
        z = proj[bidx, qy.nearest[:, :, None] - y0, qx.nearest[:, None, :] - x0]  # (B, ny, nx, D)
        ey = self.head_y(self.encoding(qy.offset, dtype=feat.dtype))  # (B, ny, D)
        ex = self.head_x(self.encoding(qx.offset, dtype=feat.dtype))  # (B, nx, D)
        z = z.add_(ey[:, :, None, :]).add_(ex[:, None, :, :])  # z is a fresh gather
        return self._act(z)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"hidden={self.hidden}, "
            f"kernel_size={self.kernel_size}, backend={self.backend!r}, rounding={self.rounding!r}"
        )


def _to_device(q: AxisQueries, device: torch.device) -> AxisQueries:
    if q.index.device == device:
        return q
    return AxisQueries(*(t.to(device) for t in (q.index, q.valid, q.nearest, q.pos, q.offset)))


def _crop(q: AxisQueries, m: int) -> AxisQueries:
    if m == 0:
        return q
    return AxisQueries(*(t[:, m:-m] for t in (q.index, q.valid, q.nearest, q.pos, q.offset)))
