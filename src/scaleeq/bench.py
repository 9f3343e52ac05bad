"""``scaleeq bench``: a quick, self-contained speed check of the upsampler on this machine.

It times (median of repeats, after a warm-up) the kriging aggregation forward+backward on each
available backend at the training shape, and a tiled render with the default upsampler, and
prints a table. The fuller, reproducible benchmarks (peak memory in fresh processes, AdaptiveConv2d)
live in the repository's ``benchmarks/`` folder.
"""

from __future__ import annotations

import statistics
import time

import torch

from .infer import upscale
from .layers.kriging import NeuralKrigingUpsampler
from .ops.aggregate import kriging_aggregate, triton_available

__all__ = ["run_bench"]


def _time(fn, device: torch.device, repeats: int) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_bench(device: str = "cpu", *, quick: bool = False, repeats: int = 5) -> dict:
    """Run the benchmark, print a table, return the numbers as a dict."""
    dev = torch.device(device)
    b, c, g, hw = (4, 64, 8, 24) if quick else (16, 256, 32, 48)
    x = torch.randn(b, c, hw, hw, device=dev, requires_grad=True)
    kernel = torch.randn(b, g, 9, hw, hw, device=dev, requires_grad=True)
    dist = torch.rand(b, 9, hw, hw, device=dev, requires_grad=True)
    backends = ["reference", "shifted"] + (
        ["triton"] if dev.type == "cuda" and triton_available() else []
    )
    results: dict = {"device": str(dev), "aggregate_ms": {}, "shape": [b, c, g, hw]}
    for backend in backends:

        def step(backend: str = backend) -> None:
            y = kriging_aggregate(x, kernel, dist, backend=backend)
            torch.autograd.grad(y.sum(), (x, kernel, dist))

        results["aggregate_ms"][backend] = 1e3 * _time(step, dev, repeats)
    up = NeuralKrigingUpsampler(64, hidden=64 if quick else 256).to(dev).eval()
    feat = torch.randn(1, 64, 32 if quick else 128, 32 if quick else 128, device=dev)
    results["render_s"] = _time(
        lambda: upscale(up, feat, scale=4), dev, 1 if not quick else repeats
    )
    results["render_output"] = [feat.shape[-2] * 4, feat.shape[-1] * 4]
    print(f"kriging aggregation fwd+bwd, B={b} C={c} groups={g} {hw}x{hw}, {dev}")
    for name, ms in results["aggregate_ms"].items():
        print(f"  {name:<10} {ms:9.2f} ms")
    out_h, out_w = results["render_output"]
    print(f"tiled render {out_h}x{out_w} from 64 channels: {results['render_s']:.2f} s")
    return results
