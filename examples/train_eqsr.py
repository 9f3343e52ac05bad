"""Train the full EQSR model (HAT-style body with AFE blocks, Neural Kriging upsampler).

    python examples/train_eqsr.py --preset demo
    torchrun --nproc_per_node 8 examples/train_eqsr.py --data DIV2K/train_HR --eval-data benchmarks/

Writes ``<out>/eqsr.pt``: ``{"config": model.config, "state_dict": ...}``
(``EQSR(**config).load_state_dict(state_dict)`` rebuilds it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import parser, run
from scaleeq.models import EQSR
from scaleeq.training import save_atomic


def build(args: argparse.Namespace) -> EQSR:
    return EQSR.from_preset("tiny" if args.preset == "demo" else args.eqsr)


def save(model: EQSR, out: Path) -> None:
    save_atomic({"config": model.config, "state_dict": model.state_dict()}, out / "eqsr.pt")


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--eqsr", default="paper", choices=["paper", "light", "tiny"])
    run(p.parse_args(argv), build, save)


if __name__ == "__main__":
    main()
