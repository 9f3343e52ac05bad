"""Baseline arbitrary-scale upsamplers with the NeuralKrigingUpsampler's contract.

- :class:`LIIFUpsampler` — a LIIF-style local implicit image function (Chen et al., 2021):
  3x3 feature unfolding, a local ensemble over the 4 nearest LR pixels weighted by the opposite
  areas, relative coordinates and the cell size as inputs, an MLP of 4 hidden layers.
- :class:`BicubicFeatureUpsampler` — the EQSR paper's Table 2 baseline: bicubic resampling of the
  features followed by 1x1 convolutions.

Both render any window of the HR grid exactly (every output pixel depends only on its own query),
so they work with windows, per-sample scales, ``scaleeq.upscale`` and ``retrofit``.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_channels, check_int, check_tensor, tracing
from .._config import store_config
from ..geometry import RenderPlan, resolve_plan
from ..ops.coords import Window
from ..sampling import sample_bicubic
from ..scale import ScaleLike

__all__ = ["BicubicFeatureUpsampler", "LIIFUpsampler"]


class BicubicFeatureUpsampler(nn.Module):
    """Bicubic resampling of the feature map at the HR queries, then 1x1 convolutions.

    Shape:
        - feat: :math:`(B, C, h, w)`; output :math:`(B, out, H, W)` or the window.
    """

    @store_config
    def __init__(
        self, in_channels: int, out_channels: int = 3, *, hidden: int = 256, layers: int = 2
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        dims = [in_channels] + [hidden] * layers
        body: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            body += [nn.Conv2d(a, b, 1), nn.GELU()]
        self.body = nn.Sequential(*body)
        self.tail = nn.Conv2d(dims[-1], out_channels, 1)

    window_exact = True
    default_window_pixels = 256 * 256

    def forward(
        self,
        feat: torch.Tensor,
        *,
        scale: ScaleLike | None = None,
        size: tuple[int, int] | None = None,
        window: Window | None = None,
        plan: RenderPlan | None = None,
    ) -> torch.Tensor:
        check_tensor(feat, "feat", ndim=4, layout="(B, C, h, w)")
        check_channels(feat, "feat", self.in_channels)
        plan = resolve_plan(feat, scale=scale, size=size, window=window, plan=plan)
        return self.tail(self.body(sample_bicubic(feat, plan)))


class LIIFUpsampler(nn.Module):
    """LIIF-style upsampler: per query, an MLP on (3x3-unfolded nearest feature, relative
    coordinate, cell size), ensembled over the 4 surrounding LR pixels.

    The MLP's first layer is linear in its inputs, so its feature part is applied on the LR grid
    before the gather (exact; ``h*w`` instead of ``4*H*W`` products). Queries are processed in
    chunks of at most ``chunk`` HR pixels, so memory stays bounded for large outputs.

    Border rows and columns: a neighbour outside the map is clamped to the edge pixel, but the
    query's relative coordinate is measured from the unclamped neighbour, so a query on an LR
    pixel centre takes that pixel's prediction everywhere (at x1 the output is the per-pixel
    prediction). Published LIIF measures from the clamped pixel; its outermost HR rows and
    columns therefore differ from this module's, interior queries agree (tested against a
    re-implementation of LIIF's ``query_rgb``).

    Args:
        in_channels: feature channels ``C`` (the MLP sees ``9 C`` after unfolding).
        out_channels: output channels.
        hidden: MLP width (256 in LIIF).
        layers: hidden layers (4 in LIIF).
        chunk: HR pixels rendered at once.

    Attributes:
        first_feat, first_coord: the MLP's first layer (feature part, coordinate-and-cell part).
        body: its ``layers - 1`` further ``hidden x hidden`` layers (a ``ModuleList``; called
            ``hidden`` before: state dicts with ``hidden.N.*`` keys still load).
        tail: its output layer.

    Shape:
        - feat: :math:`(B, C, h, w)`; output :math:`(B, out, H, W)` or the window.
    """

    @store_config
    def __init__(
        self,
        in_channels: int,
        out_channels: int = 3,
        *,
        hidden: int = 256,
        layers: int = 4,
        chunk: int = 65536,
    ) -> None:
        super().__init__()
        check_int(layers, "layers")
        check_int(chunk, "chunk")
        self.in_channels = in_channels
        self.chunk = chunk
        self.first_feat = nn.Linear(9 * in_channels, hidden)
        self.first_coord = nn.Linear(4, hidden, bias=False)  # rel_y, rel_x, cell_h, cell_w
        # the MLP between its first layer (first_feat + first_coord) and its last (tail)
        self.body = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.tail = nn.Linear(hidden, out_channels)

    window_exact = True
    default_window_pixels = 256 * 256

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # state dicts and files written while ``body`` was called ``hidden`` (``hidden.N.*``;
        # ``hidden`` is also the MLP width argument) load under the current names
        former = prefix + "hidden."
        for key in [k for k in state_dict if k.startswith(former)]:
            state_dict[prefix + "body." + key[len(former) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        feat: torch.Tensor,
        *,
        scale: ScaleLike | None = None,
        size: tuple[int, int] | None = None,
        window: Window | None = None,
        plan: RenderPlan | None = None,
    ) -> torch.Tensor:
        check_tensor(feat, "feat", ndim=4, layout="(B, C, h, w)")
        check_channels(feat, "feat", self.in_channels)
        b, c, h, w = feat.shape
        plan = resolve_plan(feat, scale=scale, size=size, window=window, plan=plan)
        sizes, out_h, out_w = plan.sizes, plan.height, plan.width
        qy, qx = plan.queries(dtype=torch.float64)
        # the LR rows / columns the region reads (floor(pos) and floor(pos) + 1), plus the one
        # pixel of context the 3x3 unfolding needs: a tile projects only its own part of the map
        ya, yb = _lr_span(qy.pos, h)
        xa, xb = _lr_span(qx.pos, w)
        crop = feat[:, :, ya:yb, xa:xb]
        unfolded = F.unfold(crop, 3, padding=1).view(b, 9 * c, yb - ya, xb - xa)
        proj = self.first_feat(unfolded.permute(0, 2, 3, 1))  # (B, h', w', D) on the LR grid
        cell = (torch.tensor([h, w], dtype=torch.float64) / sizes.to(torch.float64)).to(
            feat
        )  # (B, 2)
        rows = max(1, self.chunk // out_w)
        out = []
        for r0 in range(0, out_h, rows):
            pos_y = qy.pos[:, r0 : r0 + rows].to(feat.device)
            out.append(self._render(proj, pos_y, qx.pos.to(feat.device), cell, (h, w), (ya, xa)))
        return torch.cat(out, dim=2)

    def _render(
        self,
        proj: torch.Tensor,
        pos_y: torch.Tensor,
        pos_x: torch.Tensor,
        cell: torch.Tensor,
        lr_size: tuple[int, int],
        origin: tuple[int, int],
    ) -> torch.Tensor:
        """Render rows ``pos_y`` (B, ny) x columns ``pos_x`` (B, nx) in LR-pixel units;
        ``proj`` holds the LR map's projection from row/column ``origin`` on."""
        b = proj.shape[0]
        (h, w), (ya, xa) = lr_size, origin
        bidx = torch.arange(b, device=proj.device)[:, None, None]
        fy, fx = torch.floor(pos_y), torch.floor(pos_x)
        preds, areas = [], []
        for oy in (0, 1):
            iy = (fy + oy).clamp(0, h - 1).long() - ya
            ry = (pos_y - (fy + oy)).to(proj.dtype)  # relative coordinate, LR pixels
            for ox in (0, 1):
                ix = (fx + ox).clamp(0, w - 1).long() - xa
                rx = (pos_x - (fx + ox)).to(proj.dtype)
                z = proj[bidx, iy[:, :, None], ix[:, None, :]]  # (B, ny, nx, D)
                coords = torch.stack(
                    torch.broadcast_tensors(ry[:, :, None], rx[:, None, :]), dim=-1
                )
                cells = cell[:, None, None, :].expand(*coords.shape[:3], 2)
                z = F.relu(z + self.first_coord(torch.cat([coords, cells], dim=-1)))
                for layer in self.body:
                    z = F.relu(layer(z))
                preds.append(self.tail(z))
                areas.append((coords[..., 0] * coords[..., 1]).abs() + 1e-9)
        total = sum(areas)
        # each prediction is weighted by the area of the diagonally opposite rectangle
        out = sum(p * (a / total)[..., None] for p, a in zip(preds, reversed(areas), strict=True))
        return out.permute(0, 3, 1, 2)


def _lr_span(pos: torch.Tensor, n: int) -> tuple[int, int]:
    """LR index range ``[a, b)`` covering ``floor(pos)`` and ``floor(pos) + 1`` (clamped to
    ``[0, n)``), widened by one pixel on each side for a 3x3 neighbourhood. While tracing:
    the whole map (same result, no tensor reads)."""
    if tracing():
        return 0, n
    lo = int(torch.floor(pos.min()).clamp(0, n - 1))
    hi = int((torch.floor(pos.max()) + 1).clamp(0, n - 1))
    return max(0, lo - 1), min(n, hi + 2)
