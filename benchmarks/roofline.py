"""Roofline of CPU inference: the machine's GEMM / conv rates against what the models reach.

Measures, in one run on this machine:

- **machine rates** per dtype (fp32, bf16) and layout (NCHW, channels-last): a
  ``8192x256 @ 256x256`` matrix product and a 3x3 ``64 -> 64`` convolution on ``256x256``,
  in GMAC/s (multiply-accumulates per second);
- for the **built-in model** (``scaleeq.pretrained()``) and a **retrofitted EDSR-baseline**,
  per precision and layout: the MACs per output pixel of the body (``features``) and of the
  upsampler (everything ``scaleeq.upscale`` does after the features), counted with
  ``torch.utils.flop_counter`` (convolutions and matrix products; the kriging aggregation's
  element-wise multiply-adds are not in it), the time of each part and the GMAC/s it reaches,
  as a fraction of the machine's conv rate (body) and GEMM rate (upsampler) for that dtype;
- the same cases with **another checkout's code** (``--baseline-commit``: a temporary
  ``git worktree``; the old code gets bf16 through a plain ``torch.autocast``), in
  alternating subprocesses, and this checkout once more with glibc's allocator told to keep
  freed memory (``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``: every large tensor is
  otherwise a fresh ``mmap`` whose pages fault in on first touch).

Usage::

    python benchmarks/roofline.py --baseline-commit 8f597e7~1 --json out.json
    python benchmarks/roofline.py --baseline-src ../old/src --size 128 --precisions fp32

Results: docs/benchmarks.md ("Roofline"), benchmarks/results/roofline_cpu.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_overhead import baseline_checkout

REPO = Path(__file__).resolve().parents[1]

RATES = r"""
import json, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
def med(fn, n):
    fn(); ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
out = {}
with torch.no_grad():
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(8192, 256, dtype=dt), torch.randn(256, 256, dtype=dt)
        out[f"gemm/{name}"] = 8192 * 256 * 256 / med(lambda: a @ b, 5) / 1e9
        conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(dt)
        x = torch.randn(1, 64, 256, 256, dtype=dt)
        for layout in ("nchw", "cl"):
            if layout == "cl":
                conv = conv.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            out[f"conv/{name}/{layout}"] = 64 * 64 * 9 * 256 * 256 / med(lambda: conv(x), 3) / 1e9
print(json.dumps(out))
"""

CHILD = r"""
import json, statistics, sys, time, torch
sys.path.insert(0, sys.argv[1])
import scaleeq
from scaleeq.models import EDSR
from torch.utils.flop_counter import FlopCounterMode
cfg = json.loads(sys.argv[2])
torch.set_num_threads(cfg["threads"])
torch.manual_seed(0)
if cfg["model"] == "builtin":
    model = scaleeq.pretrained()
else:
    model = scaleeq.retrofit(EDSR.from_preset("baseline", upscale=2))
model = model.eval()
n = cfg["size"]
lr = torch.rand(1, 3, n, n, generator=torch.Generator().manual_seed(1))
if cfg["layout"] == "cl":
    model = model.to(memory_format=torch.channels_last)
    lr = lr.contiguous(memory_format=torch.channels_last)
r = float(cfg["scale"])
scale = torch.tensor([[r, r]], dtype=torch.float64)
bf16 = cfg["precision"] == "bf16"
def ctx():
    return (torch.autocast("cpu", dtype=torch.bfloat16) if bf16
            else torch.autocast("cpu", enabled=False))
def features():
    with ctx():
        return model.features(lr, scale)
def whole():
    with ctx():
        return scaleeq.upscale(model, lr, scale=r)
def macs(fn):
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops() / 2
def med(fn, reps):
    fn(); ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
with torch.no_grad():
    out = whole()
    body_macs = macs(features)
    total_macs = macs(whole)
    reps = cfg["repeats"]
    t_body = med(features, reps)
    t_total = med(whole, reps)
px = out.shape[-2] * out.shape[-1]
print(json.dumps({
    "file": scaleeq.__file__, "out": list(out.shape[-2:]),
    "finite": bool(torch.isfinite(out).all()),
    "body_macs_per_px": body_macs / px, "up_macs_per_px": (total_macs - body_macs) / px,
    "body_s": t_body, "total_s": t_total,
}))
"""

MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


def _child(script: str, args: list[str], env: dict[str, str] | None = None) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", script, *args],
        check=True, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = p.add_mutually_exclusive_group()
    base.add_argument("--baseline-src", help="src folder of the checkout to compare")
    base.add_argument("--baseline-commit", help="commit to compare (a temporary git worktree)")
    p.add_argument("--size", type=int, default=128, help="LR side (default 128)")
    p.add_argument("--scale", type=float, default=4.0)
    p.add_argument("--models", nargs="+", default=["builtin", "edsr-baseline"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--layouts", nargs="+", default=["nchw", "cl"])
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (processes each)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per process (fp32)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        old = args.baseline_src
        if args.baseline_commit:
            old = stack.enter_context(baseline_checkout(args.baseline_commit))
        return _run(args, str(REPO / "src"), old)


def _run(args: argparse.Namespace, new: str, old: str | None) -> dict:
    result: dict = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "size": args.size,
        "scale": args.scale,
        "baseline_commit": args.baseline_commit,
        "rates_gmac_s": _child(RATES, [str(args.threads)]),
        "cases": {},
    }
    variants = [("new", new, None), ("new+malloc", new, MALLOC)]
    if old:
        variants.insert(0, ("old", old, None))
    rates = result["rates_gmac_s"]
    for model in args.models:
        for prec in args.precisions:
            for layout in args.layouts:
                cfg = {
                    "model": model, "precision": prec, "layout": layout, "size": args.size,
                    "scale": args.scale, "threads": args.threads,
                    "repeats": args.repeats if prec == "fp32" else 1,
                }  # fmt: skip
                runs: dict[str, list[dict]] = {v[0]: [] for v in variants}
                for _ in range(args.rounds):
                    for label, src, env in variants:
                        runs[label].append(_child(CHILD, [src, json.dumps(cfg)], env))
                key = f"{model}/{prec}/{layout}"
                case: dict = {}
                for label, rs in runs.items():
                    r = dict(rs[0])
                    r["body_s"] = statistics.median(x["body_s"] for x in rs)
                    r["total_s"] = statistics.median(x["total_s"] for x in rs)
                    px = r["out"][0] * r["out"][1]
                    up_s = max(r["total_s"] - r["body_s"], 1e-9)
                    r["body_gmac_s"] = r["body_macs_per_px"] * px / r["body_s"] / 1e9
                    r["up_gmac_s"] = r["up_macs_per_px"] * px / up_s / 1e9
                    r["body_of_conv_rate"] = r["body_gmac_s"] / rates[f"conv/{prec}/{layout}"]
                    r["up_of_gemm_rate"] = r["up_gmac_s"] / rates[f"gemm/{prec}"]
                    case[label] = r
                if "old" in case:
                    for label in case:
                        case[label]["total_vs_old"] = (
                            case[label]["total_s"] / case["old"]["total_s"]
                        )
                result["cases"][key] = case
                _print_case(key, case)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _print_case(key: str, case: dict) -> None:
    for label, r in case.items():
        vs = f" {r['total_vs_old']:.2f}x old" if "total_vs_old" in r else ""
        print(
            f"{key:<28} {label:<11} body {r['body_macs_per_px']:>7.0f} MAC/px "
            f"{r['body_gmac_s']:>6.1f} GMAC/s ({r['body_of_conv_rate']:.2f} of conv) | "
            f"up {r['up_macs_per_px']:>7.0f} MAC/px {r['up_gmac_s']:>6.1f} GMAC/s "
            f"({r['up_of_gemm_rate']:.2f} of GEMM) | total {r['total_s']:.2f} s{vs}",
            flush=True,
        )


if __name__ == "__main__":
    main()
