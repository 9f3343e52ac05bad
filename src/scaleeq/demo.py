"""A short CPU training + evaluation demo: ``python -m scaleeq.demo``.

Trains a tiny arbitrary-scale super-resolution model on procedurally generated images (no
downloads, no extra packages), then reports PSNR against plain bicubic upsampling at
in-distribution (x2, x3, x4) and out-of-distribution (x6) scales.

The model (:func:`demo_model`) is a small version of the EQSR recipe built with
:func:`~scaleeq.retrofit`: an EDSR body with scale-aware :class:`~scaleeq.AFEBlock` layers, and
a :class:`~scaleeq.NeuralKrigingUpsampler` tail whose output is added to a bicubic interpolation
of the input. Training follows the paper's Fig. 4 at
a small size, through the library's own pipeline (:class:`~scaleeq.data.ArbitraryScalePatches`):
every sample of a batch has its own scale ``r ~ U(1, 4)``, an HR crop of ``round(24 r)`` pixels,
an LR input of 24x24 (MATLAB bicubic, :func:`~scaleeq.resize.imresize`), and only a 24x24
window of each sample's HR grid is rendered (through the same exact windowed path as
inference).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .data import ArbitraryScalePatches
from .layers import NeuralKrigingUpsampler
from .models import EDSR
from .resize import imresize
from .retrofit import ArbitraryScaleSR, retrofit

__all__ = ["demo_model", "main", "synthetic_images", "training_batches"]


def synthetic_images(n: int, size: int, *, generator: torch.Generator) -> torch.Tensor:
    """``n`` RGB images ``(n, 3, size, size)`` in [0, 1]: gratings, edges and discs.

    They have the sharp edges and oriented textures that bicubic upsampling blurs.
    """
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        r = torch.rand(8, generator=generator)
        theta = math.pi * r[0]
        freq = 2 + 10 * r[1]
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


def demo_model(width: int = 32) -> ArbitraryScaleSR:
    """The demo's model: a small EDSR body (2 residual blocks, an AFE block before each)
    retrofitted with a Neural Kriging tail over a bicubic skip (so it starts as bicubic).

    Shape:
        - lr: :math:`(B, 3, h, w)`; output :math:`(B, 3, H, W)` or the window.
    """
    net = EDSR(num_feat=width, num_block=2, upscale=2, img_range=1.0)
    up = NeuralKrigingUpsampler(width, hidden=32, blocks=1)
    return retrofit(net, upsampler=up, skip="bicubic", afe_every=1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a.clamp(0, 1), b)))


def training_batches(
    images: torch.Tensor, batch: int, patch: int, seed: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Fig. 4 batches from the library's own pipeline
    (:class:`~scaleeq.data.ArbitraryScalePatches` over ``images`` ``(N, 3, S, S)``):
    per-sample ``r ~ U(1, 4)``, ``patch x patch`` LR inputs (MATLAB bicubic), and a
    ``patch x patch`` window of each sample's HR grid with its target; endless."""
    data = ArbitraryScalePatches(list(images), patch=patch, scale_range=(1.0, 4.0), seed=seed)
    loader = DataLoader(data, batch_size=batch, shuffle=False, drop_last=True)
    for epoch in itertools.count():
        data.set_epoch(epoch)
        yield from loader


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m scaleeq.demo", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000, help="training iterations (default 1000)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=24, help="LR patch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the evaluation as JSON here")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    images = synthetic_images(64, 4 * args.patch + 8, generator=gen)
    model = demo_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    print(
        f"training the demo model ({sum(p.numel() for p in model.parameters()):,} parameters) "
        f"for {args.steps} steps"
    )
    t0 = time.perf_counter()
    batches = training_batches(images, args.batch, args.patch, args.seed)
    for step, b in zip(range(1, args.steps + 1), batches, strict=False):
        window = (b["top"], b["left"], args.patch, args.patch)
        loss = F.l1_loss(model(b["lr"], scale=b["scale"], window=window), b["hr"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == 1:
            print(
                f"step {step:4d}/{args.steps}  L1 {loss.item():.4f}  "
                f"({time.perf_counter() - t0:.0f}s)"
            )
    model.eval()
    test = synthetic_images(8, 96, generator=torch.Generator().manual_seed(10_000 + args.seed))
    rows = []
    with torch.no_grad():
        for r in (2.0, 3.0, 4.0, 6.0):
            lr = imresize(test, scale=1 / r).clamp(0, 1)  # MATLAB bicubic
            bic = F.interpolate(lr, size=(96, 96), mode="bicubic", align_corners=False)
            sr = model(lr, size=(96, 96))
            rows.append(
                {"scale": r, "psnr_bicubic": _psnr(bic, test), "psnr_model": _psnr(sr, test)}
            )
    print(f"\n{'scale':>6} {'bicubic dB':>11} {'model dB':>9} {'gain':>6}")
    for row in rows:
        gain = row["psnr_model"] - row["psnr_bicubic"]
        print(
            f"{row['scale']:>6.1f} {row['psnr_bicubic']:>11.2f} {row['psnr_model']:>9.2f} "
            f"{gain:>+6.2f}"
        )
    report = {"steps": args.steps, "results": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
