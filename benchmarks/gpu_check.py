"""One command that proves every CUDA path correct and measures it (issue 14).

    python benchmarks/gpu_check.py                 # on a GPU: tests + measurements, ~5 min
    python benchmarks/gpu_check.py --dry --out DIR # the CPU rehearsal (seconds; in the test run)

1. Runs the CUDA-marked tests (``pytest -m cuda``, tests/test_cuda.py): Triton forward and
   gradients vs the reference at small and training shapes, fp32 / fp16 / bf16, strided inputs,
   the 1x256x1024x1024 inference shape, ``torch.compile`` (inductor) vs eager, an AMP (bf16)
   training step of EDSR* and EQSR tiny, tiled vs whole ``upscale``.
2. Measures (CUDA events, ``torch.cuda.max_memory_allocated``; ratios within this one run):
   the kriging aggregation forward+backward at the training shape (triton / shifted / reference)
   and the inference aggregation's bandwidth; NeuralKrigingUpsampler vs LIIFUpsampler rendering
   1024x1024 and 4096x4096 from 256x256 and 1024x1024 features (width 256); training
   throughput of EDSR-baseline* vs the plain EDSR-baseline x2, and of SwinIR-light*;
   AdaptiveConv2d (both per-sample formulations and a shared scale) vs nn.Conv2d.
3. Writes ``<out>/gpu_<card>.json`` and ``<out>/gpu_<card>.md`` naming the card, driver, torch
   and Triton versions.

``--dry`` runs the same code on the CPU with tiny shapes and Triton's interpreter, so a run on
a freshly lent GPU never starts by fixing import errors. Each measurement is guarded: one that
fails is recorded with its error and the rest still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# peak memory bandwidth (bytes/s) of cards we may be lent, from their data sheets
PEAK_BANDWIDTH = {"H100 80GB HBM3": 3.35e12, "H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}


def _run_tests(dry: bool, timeout: int) -> dict:
    env = dict(os.environ)
    if dry:
        env.update(SCALEEQ_CHECK_DEVICE="cpu", SCALEEQ_CHECK_SIZE="tiny", TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
           str(REPO / "tests" / "test_cuda.py")]  # fmt: skip
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    failures = [ln for ln in res.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    return {"returncode": res.returncode, "summary": summary, "counts": counts,
            "failures": failures, "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


class Timer:
    """Median wall time of ``fn`` (CUDA events on a GPU) and the peak memory it allocates."""

    def __init__(self, device, repeats: int) -> None:
        import torch

        self.torch, self.device, self.repeats = torch, device, repeats

    def __call__(self, fn: Callable[[], object]) -> dict:
        torch = self.torch
        cuda = self.device.type == "cuda"
        fn()  # warm-up (compilation, autotuning, allocator)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        times = []
        for _ in range(self.repeats):
            if cuda:
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        times.sort()
        out = {"seconds": times[len(times) // 2]}
        if cuda:
            out["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        return out


def _guard(results: dict, name: str, fn: Callable[[], dict]) -> None:
    try:
        results[name] = fn()
    except Exception as e:  # record and go on: one broken case must not hide the others
        results[name] = {
            "error": f"{type(e).__name__}: {e}",
            "trace": traceback.format_exc()[-2000:],
        }


def measure(dry: bool, repeats: int) -> dict:
    import torch

    import scaleeq
    from scaleeq.layers.baselines import LIIFUpsampler
    from scaleeq.models import EDSR, SwinIR
    from scaleeq.ops import kriging_aggregate

    device = torch.device("cpu" if dry else "cuda")
    timer = Timer(device, 2 if dry else repeats)
    res: dict = {}
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, fn=torch.randn):
        return fn(*shape, generator=gen).to(device)

    # -- 1. aggregation at the training shape -------------------------------------------------
    b, g, cg, hw = (2, 2, 4, 8) if dry else (16, 32, 8, 48)

    def aggregation() -> dict:
        x, kernel, dist = (
            rand(b, g * cg, hw, hw),
            rand(b, g, 9, hw, hw),
            rand(b, 9, hw, hw, fn=torch.rand),
        )
        leaves = [t.requires_grad_() for t in (x, kernel, dist)]
        out = {}
        for backend in ("triton", "shifted", "reference"):

            def step(backend=backend):
                y = kriging_aggregate(*leaves, backend=backend)
                torch.autograd.grad(y, leaves, torch.ones_like(y))

            out[backend] = timer(step)
        ref = out["reference"]
        out["triton_speedup_vs_reference"] = ref["seconds"] / out["triton"]["seconds"]
        if "peak_mib" in ref:
            out["triton_memory_vs_reference"] = out["triton"]["peak_mib"] / max(
                ref["peak_mib"], 1e-9
            )
        out["shape"] = [b, g * cg, hw, hw]
        return out

    _guard(res, "aggregation_train", aggregation)

    def aggregation_inference() -> dict:
        c, side = (16, 16) if dry else (256, 1024)
        x, kernel, dist = (
            rand(1, c, side, side),
            rand(1, c // 8, 9, side, side),
            rand(1, 9, side, side, fn=torch.rand),
        )
        with torch.no_grad():
            t = timer(lambda: kriging_aggregate(x, kernel, dist, backend="triton"))
        moved = 4 * (2 * x.numel() + kernel.numel() + dist.numel())  # read x, kernel, dist; write y
        t["bytes_moved"] = moved
        t["achieved_bandwidth_gbs"] = moved / t["seconds"] / 1e9
        name = torch.cuda.get_device_name() if device.type == "cuda" else ""
        peak = next((v for k, v in PEAK_BANDWIDTH.items() if k in name), None)
        if peak:
            t["peak_bandwidth_gbs"] = peak / 1e9
            t["fraction_of_peak"] = moved / t["seconds"] / peak
        t["shape"] = [1, c, side, side]
        return t

    _guard(res, "aggregation_inference", aggregation_inference)

    # -- 2. NK vs LIIF rendering --------------------------------------------------------------
    def rendering() -> dict:
        width = 16 if dry else 256
        cases = [(8, 32), (16, 64)] if dry else [(256, 1024), (1024, 4096)]
        out = {}
        for lr_side, hr_side in cases:
            feat = rand(1, 64 if not dry else 8, lr_side, lr_side)
            row = {}
            for name, up in (
                ("nk", scaleeq.NeuralKrigingUpsampler(feat.shape[1], hidden=width)),
                ("liif", LIIFUpsampler(feat.shape[1], hidden=width)),
            ):
                up = up.to(device).eval()
                row[name] = timer(
                    lambda up=up, f=feat, n=hr_side: scaleeq.upscale(up, f, size=(n, n))
                )
            row["nk_time_vs_liif"] = row["nk"]["seconds"] / row["liif"]["seconds"]
            if "peak_mib" in row["nk"]:
                row["nk_memory_vs_liif"] = row["nk"]["peak_mib"] / max(
                    row["liif"]["peak_mib"], 1e-9
                )
            out[f"{lr_side}->{hr_side}"] = row
        return out

    _guard(res, "rendering", rendering)

    # -- 3. training throughput ---------------------------------------------------------------
    def throughput() -> dict:
        batch, patch = (2, 16) if dry else (16, 48)
        edsr = "tiny" if dry else "baseline"
        lr = rand(batch, 3, patch, patch, fn=torch.rand)
        out = {}

        def plain_step(net):
            hr = torch.rand(batch, 3, 2 * patch, 2 * patch, device=device)
            opt = torch.optim.Adam(net.parameters(), 1e-4)

            def step():
                loss = (net(lr) - hr).abs().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            return step

        def star_step(asr):
            hr = torch.rand(batch, 3, patch, patch, device=device)
            opt = torch.optim.Adam(asr.parameters(), 1e-4)
            scale = torch.linspace(1.0, 4.0, batch, dtype=torch.float64)
            window = (
                torch.zeros(batch, dtype=torch.long),
                torch.zeros(batch, dtype=torch.long),
                patch,
                patch,
            )

            def step():
                loss = (asr(lr, scale=scale, window=window) - hr).abs().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            return step

        plain = EDSR.from_preset(edsr, upscale=2).to(device)
        out["edsr_baseline_x2"] = timer(plain_step(plain))
        out["edsr_baseline_star"] = timer(
            star_step(scaleeq.retrofit(EDSR.from_preset(edsr, upscale=2).to(device)))
        )
        swin = SwinIR.from_preset("tiny" if dry else "light", upscale=2).to(device)
        out["swinir_light_star"] = timer(star_step(scaleeq.retrofit(swin)))
        for v in out.values():
            v["images_per_s"] = batch / v["seconds"]
        out["star_vs_plain"] = (
            out["edsr_baseline_star"]["images_per_s"] / out["edsr_baseline_x2"]["images_per_s"]
        )
        return out

    _guard(res, "training_throughput", throughput)

    # -- 4. AdaptiveConv2d vs nn.Conv2d ---------------------------------------------------------
    def adaptive_conv() -> dict:
        out = {}
        b, hw = (2, 8) if dry else (16, 48)
        for c in (8,) if dry else (64, 180):
            x = rand(b, c, hw, hw).requires_grad_()
            scale = torch.linspace(1.0, 4.0, b)
            conv = torch.nn.Conv2d(c, c, 3, padding=1).to(device)
            row = {"conv": timer(lambda conv=conv, x=x: conv(x).sum().backward())}
            for impl in ("input", "grouped"):
                ac = scaleeq.AdaptiveConv2d(c, c, 3, impl=impl).to(device)
                row[impl] = timer(lambda ac=ac, x=x, s=scale: ac(x, s).sum().backward())
            shared = scaleeq.AdaptiveConv2d(c, c, 3).to(device)
            row["shared_scale"] = timer(lambda m=shared, x=x: m(x, 2.5).sum().backward())
            for k in ("input", "grouped", "shared_scale"):
                row[f"{k}_vs_conv"] = row[k]["seconds"] / row["conv"]["seconds"]
            out[f"C={c}"] = row
        return out

    _guard(res, "adaptive_conv", adaptive_conv)
    return res


def environment(dry: bool) -> dict:
    import torch

    env = {"torch": torch.__version__, "python": platform.python_version(), "dry": dry}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if not dry and torch.cuda.is_available():
        env["card"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
        try:
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
    else:
        env["card"] = "cpu-dry"
    return env


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"### GPU check: {env['card']}",
        "",
        f"torch {env['torch']}, Triton {env['triton']}, CUDA {env.get('cuda')}, "
        f"driver {env.get('driver')}.",
        f"Tests (`pytest -m cuda`): {report['tests']['summary']}",
        "",
        "| measurement | value |",
        "|---|---|",
    ]

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            if "error" in node:
                lines.append(f"| {prefix} | error: {node['error'][:120]} |")
                return
            for k, v in node.items():
                if k != "trace":
                    walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(node, float):
            lines.append(f"| {prefix} | {node:.4g} |")
        elif isinstance(node, int | str) and not isinstance(node, bool):
            lines.append(f"| {prefix} | {node} |")

    walk("", report["measurements"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--dry", action="store_true", help="CPU rehearsal: tiny shapes, Triton interpreter"
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--skip-tests", action="store_true", help="measure only")
    p.add_argument("--skip-measure", action="store_true", help="run the CUDA tests only")
    p.add_argument("--test-timeout", type=int, default=300)
    args = p.parse_args(argv)
    if args.dry:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
    else:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --dry for the CPU rehearsal")
    t0 = time.perf_counter()
    report: dict = {"environment": environment(args.dry)}
    report["tests"] = (
        {"summary": "skipped"} if args.skip_tests else _run_tests(args.dry, args.test_timeout)
    )
    print(f"tests: {report['tests']['summary']}", flush=True)
    report["measurements"] = {} if args.skip_measure else measure(args.dry, args.repeats)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    card = re.sub(r"[^A-Za-z0-9]+", "_", report["environment"]["card"]).strip("_").lower()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"gpu_{card}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"gpu_{card}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / f'gpu_{card}.json'} in {report['seconds']} s")
    failed = report["tests"].get("counts", {}).get("failed", 0) or report["tests"].get(
        "returncode", 0
    )
    errors = [k for k, v in report["measurements"].items() if isinstance(v, dict) and "error" in v]
    if failed or errors:
        print(f"FAILED: tests {report['tests'].get('summary')}; measurements with errors: {errors}")
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
