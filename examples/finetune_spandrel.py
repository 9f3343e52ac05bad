"""Fine-tune a model loaded with spandrel at arbitrary scales (retrofit + the Fig. 4 pipeline).

    python examples/finetune_spandrel.py --model 4x_RealESRGAN.pth --data DIV2K/train_HR
    python examples/finetune_spandrel.py --preset demo          # CPU, a few minutes (see below)

``--model`` is any super-resolution file spandrel loads (``.pth``, ``.safetensors``, ...): it is
read with ``spandrel.ModelLoader``, retrofitted (body kept, AFE blocks at identity, a Neural
Kriging upsampler rendering a residual over bicubic) and fine-tuned with a random scale per
sample. Without ``--model`` the demo writes a small Real-ESRGAN Compact network built with
spandrel's own class to ``<out>/compact_x4.pth`` and loads it from there (no pretrained weights
can be downloaded here, so its body starts from random weights: the demo shows the workflow,
and how far a few hundred CPU steps get over bicubic at x2.5 and x3.3).

Writes ``<out>/model.safetensors`` (``scaleeq.load`` rebuilds it through spandrel) and
``<out>/results.{json,md}``. Needs ``pip install 'scaleeq[examples,spandrel]'``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import scaleeq
from _common import parser, run


def _spandrel():
    from scaleeq._torchvision import import_spandrel

    try:
        return import_spandrel("this example")
    except ImportError as e:
        raise SystemExit(str(e)) from e


def demo_file(out: Path) -> Path:
    """A Compact x4 network (spandrel's class), saved as a user's ``.pth`` would be."""
    _spandrel()
    from spandrel.architectures.Compact import Compact

    path = out / "compact_x4.pth"
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(Compact(num_feat=32, num_conv=8, upscale=4).state_dict(), path)
    return path


def build(args: argparse.Namespace) -> scaleeq.ArbitraryScaleSR:
    spandrel = _spandrel()
    path = Path(args.model) if args.model else demo_file(Path(args.out))
    desc = spandrel.ModelLoader().load_from_file(path)
    print(f"loaded {path}: {desc.architecture.name} x{desc.scale} ({', '.join(desc.tags)})")
    probe = scaleeq.retrofit(desc, afe="none")
    channels = probe.upsampler.in_channels
    up = scaleeq.NeuralKrigingUpsampler(channels, hidden=args.hidden, blocks=1)
    return scaleeq.retrofit(desc, upsampler=up, skip="bicubic")


def save(model: scaleeq.ArbitraryScaleSR, out: Path) -> None:
    model.save(out / "model.safetensors")


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", help="a super-resolution model file that spandrel loads")
    p.add_argument("--hidden", type=int, default=64, help="latent width of the new upsampler")
    p.set_defaults(eval_scales="2.5,3.3")
    run(p.parse_args(argv), build, save)


if __name__ == "__main__":
    main()
