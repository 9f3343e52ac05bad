"""Forward+backward time of AdaptiveConv2d against nn.Conv2d at the same shapes.

Cases (B=16, 48x48, 3x3, C=64 and C=180, per-sample scales unless stated):

- ``conv``: ``nn.Conv2d`` (the baseline every ratio is taken against);
- ``adaptive/auto``: AdaptiveConv2d as users get it (per-sample scales, ``impl="auto"``);
- ``adaptive/scale``: the input-channel-scaling formulation;
- ``adaptive/grouped``: the per-sample-kernel grouped-convolution formulation;
- ``adaptive/shared``: one scale for the whole batch (modulation folded into the weight).

Each case is timed as the median of ``--repeats`` runs after ``--warmup`` runs; all cases of a
shape are measured interleaved in the same process, so the ratios share the machine's state.

Usage::

    python benchmarks/adaptive_conv.py [--repeats 7] [--json out.json] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import scaleeq


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _fwd_bwd(module: nn.Module, x: torch.Tensor, scale: object | None) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        y = module(x) if scale is None else module(x, scale)
        y.square().mean().backward()

    return step


def bench_shape(
    c: int, *, batch: int, size: int, repeats: int, warmup: int, device: torch.device
) -> dict:
    torch.manual_seed(0)
    x = torch.randn(batch, c, size, size, device=device, requires_grad=True)
    per_sample = torch.empty(batch, device=device).uniform_(1.0, 4.0)
    conv = nn.Conv2d(c, c, 3, padding=1).to(device)
    cases: dict[str, Callable[[], None]] = {"conv": _fwd_bwd(conv, x, None)}
    for impl in ("auto", "input", "grouped"):
        layer = scaleeq.AdaptiveConv2d(c, c, 3, zero_init=False, impl=impl).to(device)
        cases[f"adaptive/{impl}"] = _fwd_bwd(layer, x, per_sample)
    shared = scaleeq.AdaptiveConv2d(c, c, 3, zero_init=False).to(device)
    cases["adaptive/shared"] = _fwd_bwd(shared, x, 2.5)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    order = list(cases)
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)  # interleaved, in a new order each round: no case always runs first
        for name in order:
            fn = cases[name]
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "shape": {"batch": batch, "channels": c, "size": size, "kernel": 3},
        "median_ms": {k: 1e3 * v for k, v in med.items()},
        "ratio_to_conv": {k: v / med["conv"] for k, v in med.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--channels", type=int, nargs="+", default=[64, 180])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    args = p.parse_args(argv)
    if args.repeats < 5:
        p.error("--repeats must be >= 5")
    device = torch.device(args.device)
    results = [
        bench_shape(
            c,
            batch=args.batch,
            size=args.size,
            repeats=args.repeats,
            warmup=args.warmup,
            device=device,
        )
        for c in args.channels
    ]
    report = {
        "benchmark": "adaptive_conv",
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "results": results,
    }
    names = list(results[0]["median_ms"])
    print(
        f"AdaptiveConv2d forward+backward, B={args.batch}, {args.size}x{args.size}, 3x3, "
        f"{report['device']}, {report['threads']} threads, median of {args.repeats}"
    )
    print(
        f"{'case':<18}"
        + "".join(f"{'C=' + str(r['shape']['channels']) + ' ms':>12}{'ratio':>8}" for r in results)
    )
    for n in names:
        row = "".join(f"{r['median_ms'][n]:>12.2f}{r['ratio_to_conv'][n]:>8.2f}" for r in results)
        print(f"{n:<18}{row}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
