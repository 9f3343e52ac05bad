"""A short CPU training + evaluation demo: ``python -m scaleeq.demo``.

Trains a tiny arbitrary-scale super-resolution model on procedurally generated images (no
downloads, no extra packages) with one random scale per sample, then reports PSNR against
plain bicubic upsampling at in-distribution and out-of-distribution scales.

The model is deliberately small: bicubic upsampling to the target size, followed by a
residual refinement made of :class:`~scaleeq.AFEBlock` layers that see the scale, so one set
of weights serves every factor. It shows the library's scale handling end to end; the paper's
full models live in :mod:`scaleeq.models` once available.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from .layers import AFEBlock
from .scale import ScaleLike, as_scale_tensor, output_size, scale_context

__all__ = ["BicubicRefiner", "main", "synthetic_images"]


def synthetic_images(n: int, size: int, *, generator: torch.Generator) -> torch.Tensor:
    """``n`` RGB images ``(n, 3, size, size)`` in [0, 1]: gratings, edges and discs.

    They have the sharp edges and oriented textures that bicubic upsampling blurs.
    """
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        r = torch.rand(16, generator=generator)
        theta = math.pi * r[0]
        freq = 4 + 20 * r[1]
        grating = 0.5 + 0.5 * torch.sin(
            2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta))
        )
        edge = (xx * math.cos(3 * r[2]) + yy * math.sin(3 * r[2]) > r[3]).float()
        disc = ((xx - r[4]) ** 2 + (yy - r[5]) ** 2 < (0.1 + 0.3 * r[6]) ** 2).float()
        colors = torch.rand(3, 3, generator=generator)
        img = colors[0][:, None, None] * grating + colors[1][:, None, None] * edge
        img = img + colors[2][:, None, None] * disc
        out[i] = img / img.amax().clamp_min(1e-6)
    return out.clamp(0, 1)


class BicubicRefiner(nn.Module):
    """Bicubic upsampling plus a scale-aware residual refinement.

    Shape:
        - lr: :math:`(B, 3, h, w)`; output :math:`(B, 3, H, W)` with ``(H, W)`` from ``scale``.
    """

    def __init__(self, width: int = 32, blocks: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*[AFEBlock(width) for _ in range(blocks)])
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(
        self, lr: torch.Tensor, scale: ScaleLike, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        size = size or output_size(lr.shape[-2:], scale)
        up = F.interpolate(lr, size=size, mode="bicubic", align_corners=False)
        # Per-sample scales reach every AFEBlock of the body through the scale context.
        with scale_context(as_scale_tensor(scale, lr.shape[0])):
            return up + self.tail(self.body(self.head(up)))


def _downscale(hr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(hr, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(
        0, 1
    )


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a.clamp(0, 1), b)))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m scaleeq.demo", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training iterations (default 300)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=24, help="LR patch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the evaluation as JSON here")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = BicubicRefiner()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    hr_size = args.patch * 4
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        hr = synthetic_images(args.batch, hr_size, generator=gen)
        # one random scale in [1, 4] for the whole batch (sizes must agree); it varies per step
        r = 1 + 3 * torch.rand((), generator=gen).item()
        lr_size = (max(1, round(hr_size / r)), max(1, round(hr_size / r)))
        lr = _downscale(hr, lr_size)
        sr = model(lr, (hr_size / lr_size[0], hr_size / lr_size[1]), (hr_size, hr_size))
        loss = F.l1_loss(sr, hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == 1:
            print(
                f"step {step:4d}/{args.steps}  L1 {loss.item():.4f}  ({time.perf_counter() - t0:.0f}s)"
            )
    model.eval()
    test = synthetic_images(8, 96, generator=torch.Generator().manual_seed(10_000 + args.seed))
    rows = []
    with torch.no_grad():
        for r in (2.0, 3.0, 4.0, 6.0):
            lr = _downscale(test, (round(96 / r), round(96 / r)))
            bic = F.interpolate(lr, size=(96, 96), mode="bicubic", align_corners=False)
            sr = model(lr, (96 / lr.shape[-2], 96 / lr.shape[-1]), (96, 96))
            rows.append(
                {"scale": r, "psnr_bicubic": _psnr(bic, test), "psnr_model": _psnr(sr, test)}
            )
    print(f"\n{'scale':>6} {'bicubic dB':>11} {'model dB':>9} {'gain':>6}")
    for row in rows:
        gain = row["psnr_model"] - row["psnr_bicubic"]
        print(
            f"{row['scale']:>6.1f} {row['psnr_bicubic']:>11.2f} {row['psnr_model']:>9.2f} {gain:>+6.2f}"
        )
    report = {"steps": args.steps, "results": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
