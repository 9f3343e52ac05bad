"""Speed and peak memory of the kriging aggregation and of whole-image rendering (CPU).

Cases, each run in a fresh subprocess so its peak memory is its own:

- ``train/reference``, ``train/shifted``: forward+backward of the aggregation alone at the
  training shape (B=16, C=256, 48x48 queries, 3x3, 32 groups), gradients to x, K and R.
- ``render/whole``, ``render/tiled``: the full default NeuralKrigingUpsampler (latent 256,
  2 blocks) rendering a 1024x1024 output from a 256x256, 64-channel feature map (x4), as one
  window and with ``scaleeq.upscale`` (default tile budget); max |difference| reported.
- ``render/tiled-x8``: the same upsampler to 2048x2048 (x8) with ``scaleeq.upscale``.
- with ``--device cuda``: ``cuda-train/{reference,shifted,triton}`` (fp32) and
  ``cuda-train/triton-fp16`` / ``-bf16``, the training shape on the GPU; peak memory there is
  ``torch.cuda.max_memory_allocated`` growth over the inputs.

Peak memory is the growth of the process's peak resident set size (``ru_maxrss``) over its
resident size once the inputs exist; Python's tracemalloc does not see torch's allocations.

Usage::

    python benchmarks/kriging.py [--repeats 5] [--json out.json] [--cases train render]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

CASES = ("train/reference", "train/shifted", "render/whole", "render/tiled", "render/tiled-x8")
CUDA_CASES = (
    "cuda-train/reference",
    "cuda-train/shifted",
    "cuda-train/triton",
    "cuda-train/triton-fp16",
    "cuda-train/triton-bf16",
)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_case(name: str, repeats: int) -> dict:
    import scaleeq
    from scaleeq.ops import kriging_aggregate

    torch.manual_seed(0)
    result: dict = {"case": name}
    if name.startswith(("train/", "cuda-train/")):
        cuda = name.startswith("cuda-")
        device = torch.device("cuda" if cuda else "cpu")
        backend, _, dtype_name = name.split("/")[1].partition("-")
        dtype = {"": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
        b, c, g, hw, k = 16, 256, 32, 48, 3
        opts = {"device": device, "dtype": dtype}
        x = torch.randn(b, c, hw, hw, **opts, requires_grad=True)
        kernel = torch.randn(b, g, k * k, hw, hw, **opts, requires_grad=True)
        dist = torch.rand(b, k * k, hw, hw, **opts, requires_grad=True)
        gy = torch.randn(b, c, hw, hw, **opts)

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize()

        if cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss_bytes()

        def step() -> None:
            y = kriging_aggregate(x, kernel, dist, backend=backend)
            torch.autograd.grad(y, (x, kernel, dist), gy)

        step()  # first run: the peak (and Triton's compilation)
        sync()
        peak = torch.cuda.max_memory_allocated() if cuda else _peak_bytes()
        result["peak_growth_mib"] = (peak - base) / 2**20
        if cuda:
            result["device"] = torch.cuda.get_device_name()
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
        result["median_s"] = statistics.median(times)
        result["shape"] = {"B": b, "C": c, "groups": g, "H": hw, "W": hw, "k": k}
        return result
    up = scaleeq.NeuralKrigingUpsampler(64).eval()
    feat = torch.randn(1, 64, 256, 256)
    out_size = (2048, 2048) if name.endswith("x8") else (1024, 1024)
    base = _rss_bytes()
    t0 = time.perf_counter()
    with torch.no_grad():
        if name == "render/whole":
            out = up(feat, size=out_size)
        else:
            out = scaleeq.upscale(up, feat, size=out_size)
    result["time_s"] = time.perf_counter() - t0
    result["peak_growth_mib"] = (_peak_bytes() - base) / 2**20
    result["output"] = list(out.shape)
    if name == "render/tiled":  # compare with the whole render, part by part to bound memory
        with torch.no_grad():
            ref = up(feat, size=out_size, window=(0, 0, 1024, 1024))
        result["max_abs_diff_vs_whole"] = float((ref - out).abs().max())
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--cases", nargs="+", default=list(CASES), help="case names or prefixes (train, render)"
    )
    p.add_argument("--json", default=None)
    p.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="cuda: the GPU training-shape cases",
    )
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.repeats)))
        return {}
    if args.repeats < 5:
        p.error("--repeats must be >= 5")
    if args.device == "cuda":
        selected = list(CUDA_CASES)
    else:
        selected = [c for c in CASES if any(c == s or c.startswith(s + "/") for s in args.cases)]
    results = {}
    for case in selected:
        proc = subprocess.run(
            [sys.executable, __file__, "--case", case, "--repeats", str(args.repeats)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"case {case} failed:\n{proc.stderr}")
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{case:<18} {json.dumps(results[case])}", flush=True)
    report = {
        "benchmark": "kriging",
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "results": results,
    }
    for prefix in ("cuda-train/", "train/"):
        cases = {c.split("/")[1]: r for c, r in results.items() if c.startswith(prefix)}
        if prefix == "cuda-train/" and cases:
            print("\nAggregation forward+backward on CUDA, B=16, C=256, 48x48, 3x3, 32 groups")
            print(f"{'backend':<16}{'median ms':>12}{'peak MiB':>12}")
            for name, r in cases.items():
                print(f"{name:<16}{1e3 * r['median_s']:>12.2f}{r['peak_growth_mib']:>12.0f}")
            if "reference" in cases and "triton" in cases:
                report["cuda_ratios"] = {
                    "time_triton_over_reference": cases["triton"]["median_s"]
                    / cases["reference"]["median_s"],
                    "time_triton_over_shifted": cases["triton"]["median_s"]
                    / cases["shifted"]["median_s"],
                    "peak_triton_over_reference": cases["triton"]["peak_growth_mib"]
                    / cases["reference"]["peak_growth_mib"],
                }
    if "train/reference" in results and "train/shifted" in results:
        ref, shifted = results["train/reference"], results["train/shifted"]
        report["train_ratios"] = {
            "time_shifted_over_reference": shifted["median_s"] / ref["median_s"],
            "peak_shifted_over_reference": shifted["peak_growth_mib"] / ref["peak_growth_mib"],
        }
        print("\nAggregation forward+backward, B=16, C=256, 48x48, 3x3, 32 groups (CPU)")
        print(f"{'backend':<12}{'median ms':>12}{'peak MiB':>12}")
        for name, r in (("reference", ref), ("shifted", shifted)):
            print(f"{name:<12}{1e3 * r['median_s']:>12.1f}{r['peak_growth_mib']:>12.0f}")
        tr = report["train_ratios"]
        print(
            f"shifted/reference: time {tr['time_shifted_over_reference']:.2f}x, "
            f"peak {tr['peak_shifted_over_reference']:.2f}x"
        )
    renders = [c for c in results if c.startswith("render/")]
    if renders:
        print("\nNeuralKrigingUpsampler(64) render (CPU)")
        print(f"{'case':<18}{'output':>14}{'time s':>10}{'peak MiB':>10}")
        for c in renders:
            r = results[c]
            print(
                f"{c:<18}{'x'.join(map(str, r['output'][2:])):>14}"
                f"{r['time_s']:>10.1f}{r['peak_growth_mib']:>10.0f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
