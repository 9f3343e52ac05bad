r"""Train SwinIR* (SwinIR retrofitted with AFE blocks and the Neural Kriging upsampler).

python examples/train_swinir_star.py --preset demo
torchrun --nproc_per_node 4 examples/train_swinir_star.py --data DIV2K/train_HR \
    --eval-data benchmarks/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import scaleeq
from _common import parser, run
from scaleeq.models import SwinIR


def build(args: argparse.Namespace) -> scaleeq.ArbitraryScaleSR:
    if args.preset == "demo":
        net = SwinIR.from_preset("tiny", upscale=2)
        up = scaleeq.NeuralKrigingUpsampler(net.config["embed_dim"], hidden=64, blocks=1)
        return scaleeq.retrofit(net, upsampler=up, skip="bicubic")
    net = SwinIR.from_preset(args.swinir, upscale=args.pretrained_scale)
    if args.pretrained:
        state = torch.load(args.pretrained, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("params", state))
    return scaleeq.retrofit(net, skip=args.skip)


def save(model: scaleeq.ArbitraryScaleSR, out: Path) -> None:
    model.save(out / "model.pt")


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--swinir", default="classical", choices=["classical", "light", "tiny"])
    p.add_argument("--pretrained", help="an official SwinIR checkpoint to start from")
    p.add_argument("--pretrained-scale", type=int, default=2)
    p.add_argument("--skip", default="none", choices=["none", "bicubic"])
    run(p.parse_args(argv), build, save)


if __name__ == "__main__":
    main()
