"""Figure for the docs: crops of benchmark images, bicubic | built-in model | HR.

    python examples/figure_pretrained.py [--out docs/img/pretrained_crops.png]

Each row: an HR benchmark image downscaled by ``r`` (MATLAB bicubic, 8-bit), then upscaled
back by ``r`` with MATLAB bicubic and with ``scaleeq.pretrained()``; the same crop of each is
shown beside the HR crop, with its PSNR-Y over the whole image. Needs matplotlib
(``pip install 'scaleeq[docs]'``) and the benchmark images in ``../shared/data/benchmarks``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import scaleeq
from scaleeq.data import load_image
from scaleeq.evaluate import make_lr_hr
from scaleeq.metrics import psnr_y
from scaleeq.resize import imresize

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO.parent / "shared" / "data" / "benchmarks"
# (set, image, scale, crop top, crop left, crop size) in HR pixels
ROWS = [
    ("Set5", "butterfly.png", 3.3, 70, 70, 110),
    ("Set5", "butterfly.png", 6.0, 70, 70, 110),
    ("Set14", "zebra.png", 3.3, 140, 200, 110),
    ("Set14", "zebra.png", 6.0, 140, 200, 110),
]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "img" / "pretrained_crops.png"))
    p.add_argument("--checkpoint", help="a model file instead of the built-in model")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = scaleeq.load(args.checkpoint).eval() if args.checkpoint else scaleeq.pretrained()
    rows = [r for r in ROWS if (BENCH / r[0] / "HR" / r[1]).is_file()]
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3.1 * len(rows)))
    for row, (set_name, name, r, top, left, size) in zip(axes, rows, strict=True):
        lr, hr = make_lr_hr(load_image(BENCH / set_name / "HR" / name), r)
        out_size = tuple(hr.shape[-2:])
        bic = imresize(lr[None], size=out_size).clamp(0, 1)
        sr = scaleeq.upscale(model, lr[None], size=out_size).clamp(0, 1)
        quant = [(x * 255).round() / 255 for x in (bic, sr)]
        panels = [
            (quant[0][0], f"bicubic  {float(psnr_y(quant[0], hr[None], scale=r)):.2f} dB"),
            (quant[1][0], f"scaleeq built-in  {float(psnr_y(quant[1], hr[None], scale=r)):.2f} dB"),
            (hr, f"HR ({name}, x{r:g})"),
        ]
        for ax, (img, title) in zip(row, panels, strict=True):
            crop = img[:, top : top + size, left : left + size]
            ax.imshow(crop.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(title, fontsize=10)
            ax.axis("off")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
