"""Package a trained ``--preset cbsd`` run as the built-in model (``scaleeq.pretrained``).

    python examples/export_pretrained.py runs/cbsd
        [--out src/scaleeq/weights/edsr_star_cbsd.safetensors]

Takes the weights from ``<run>/train_state.pt`` (``--weights live``, default, or ``ema``: the
training loop's EMA starts from the initial weights, so after a few thousand steps at decay
0.999 it still carries some of the initialisation), stores them as fp16 safetensors with the
model's configuration, and checks that the fp16 file's fp32 outputs stay within 1e-3 of the
trained model's on a benchmark image at x2, x3.7 and (2, 3) (prints the differences).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import scaleeq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_BENCHMARKS, parser, resolve
from train_edsr_star import build

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="output folder of train_edsr_star.py --preset cbsd")
    p.add_argument("--weights", choices=["live", "ema"], default="live")
    p.add_argument(
        "--out", default=str(REPO / "src" / "scaleeq" / "weights" / "edsr_star_cbsd.safetensors")
    )
    args = p.parse_args(argv)
    state = torch.load(Path(args.run) / "train_state.pt", map_location="cpu", weights_only=False)
    model = build(resolve(parser("").parse_args(["--preset", "cbsd"])))
    if args.weights == "ema" and state.get("ema") is None:
        raise SystemExit("the run kept no EMA (train with --ema)")
    model.load_state_dict(state["ema"] if args.weights == "ema" else state["model"])
    model.eval()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out, dtype=torch.float16)
    stored = scaleeq.load(args.out).eval()
    img = scaleeq.data.load_image(SHARED_BENCHMARKS / "Set5" / "HR" / "butterfly.png")[
        None, :, :96, :96
    ]
    worst = 0.0
    with torch.no_grad():
        for scale in (2.0, 3.7, (2.0, 3.0)):
            a, b = model(img, scale=scale), stored(img, scale=scale)
            worst = max(worst, float((a - b).abs().max()))
            print(f"scale {scale}: max |fp32 - fp16-stored| = {float((a - b).abs().max()):.2e}")
    size = Path(args.out).stat().st_size
    print(
        f"step {state['step']}; wrote {args.out} ({size / 2**20:.2f} MiB); "
        f"worst difference {worst:.2e}"
    )
    if worst > 1e-3:
        raise SystemExit("fp16 storage moves the outputs by more than 1e-3: store fp32 instead")


if __name__ == "__main__":
    main()
