"""Train EDSR* (EDSR retrofitted with AFE blocks and the Neural Kriging upsampler).

    python examples/train_edsr_star.py --preset demo                  # CPU, minutes
    python examples/train_edsr_star.py --preset cbsd --out runs/cbsd  # the built-in model, ~2 h
    python examples/train_edsr_star.py --data DIV2K/train_HR --eval-data benchmarks/
    python examples/train_edsr_star.py --data ... --pretrained edsr_baseline_x2.pth
    torchrun --nproc_per_node 4 examples/train_edsr_star.py --data ...

Writes ``<out>/train_state.pt`` (resumable: rerun the same command), ``<out>/model.pt``
(``scaleeq.load``-able) and ``<out>/results.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import scaleeq
from _common import parser, run
from scaleeq.models import EDSR


def build(args: argparse.Namespace) -> scaleeq.ArbitraryScaleSR:
    if args.preset == "demo":  # small and from scratch: learn a residual over bicubic
        net = EDSR(num_feat=32, num_block=8, upscale=2, img_range=1.0)
        up = scaleeq.NeuralKrigingUpsampler(32, hidden=64, blocks=1)
        return scaleeq.retrofit(net, upsampler=up, skip="bicubic")
    if args.preset == "cbsd":  # the built-in model: between the demo size and EDSR-baseline
        net = EDSR(num_feat=48, num_block=12, upscale=2, img_range=1.0)
        up = scaleeq.NeuralKrigingUpsampler(48, hidden=64, blocks=1)
        return scaleeq.retrofit(net, upsampler=up, skip="bicubic")
    net = EDSR.from_preset(args.edsr, upscale=args.pretrained_scale)
    if args.pretrained:
        net.load_state_dict(torch.load(args.pretrained, map_location="cpu", weights_only=True))
    return scaleeq.retrofit(net, skip=args.skip)


def save(model: scaleeq.ArbitraryScaleSR, out: Path) -> None:
    model.save(out / "model.pt")


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--edsr", default="baseline", choices=sorted(EDSR.PRESETS), help="EDSR size")
    p.add_argument(
        "--pretrained", help="a fixed-scale EDSR state dict to start from (BasicSR format)"
    )
    p.add_argument(
        "--pretrained-scale", type=int, default=2, help="the fixed scale of --pretrained"
    )
    p.add_argument(
        "--skip", default="none", choices=["none", "bicubic"], help="residual over bicubic"
    )
    run(p.parse_args(argv), build, save)


if __name__ == "__main__":
    main()
