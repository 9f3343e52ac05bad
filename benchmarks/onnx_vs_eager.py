"""onnxruntime (CPU) vs PyTorch eager for an exported arbitrary-scale model (issue 13).

A retrofitted EDSR-baseline (``retrofit(EDSR.from_preset("baseline", upscale=4))``: AFE blocks +
Neural Kriging upsampler, weights perturbed away from the identity init) renders 512x512 from a
128x128 input at x4:

- ``eager``: ``model(lr, scale=4)``, one whole render;
- ``upscale``: ``scaleeq.upscale(model, lr, scale=4)``, PyTorch's tiled path;
- ``onnxruntime-256`` / ``onnxruntime-128``: files from ``scaleeq.onnx.export_onnx`` with
  tiles of 256x256 (4 runs) and 128x128 (16 runs) in an ``onnxruntime.InferenceSession``
  through ``OnnxUpscaler`` (each run computes the backbone features again);
- ``onnxruntime-split256`` / ``onnxruntime-split128``: ``export_onnx(..., split=True)``: the
  features graph once, then 4 / 16 runs of the render graph.
- ``onnxruntime-default``: ``export_onnx(model, path)`` and ``OnnxUpscaler(path)`` with their
  defaults: a split export whose render tile is half the upsampler's window budget (64 x 64
  here), run with lean session options (no memory arena, no memory pattern).

The ``onnxruntime-<tile>`` runners use onnxruntime's own default session options (memory
arena on); ``onnxruntime-default`` uses ``OnnxUpscaler``'s. ``--keep-freed-memory`` applies
:func:`scaleeq.allocator.keep_freed_memory` in every child (the ``scaleeq`` command's own
setting); ``--backends`` picks a subset.

Each backend runs in its own subprocess (so peak memory is its own), in alternating order over
``--rounds`` rounds; a subprocess loads the model, warms up once, then times ``--reps`` calls.
Reports the median time, the peak RSS (``VmHWM``, reset after loading) above the RSS after
loading, and the ratios to eager (Linux only: it reads ``/proc/self``).
The onnxruntime output is checked against eager (max abs difference).

Usage::

    python benchmarks/onnx_vs_eager.py --json benchmarks/results/onnx_vs_eager_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SETUP = r"""
import torch
import scaleeq
from scaleeq.models import EDSR
torch.manual_seed(0)
model = scaleeq.retrofit(EDSR.from_preset("baseline", upscale=4)).eval()
gen = torch.Generator().manual_seed(0)
with torch.no_grad():  # away from the identity init: the AFE blocks do work
    for p in model.parameters():
        p.add_(0.02 * torch.randn(p.shape, generator=gen))
lr = torch.rand(1, 3, 128, 128, generator=gen)
"""

CHILD = r"""
import json, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
backend, onnx_path, reps, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
exec(sys.argv[7])
if backend.startswith("onnxruntime"):
    import onnxruntime as ort
    from scaleeq.onnx import OnnxUpscaler
    from scaleeq.onnx.files import lean_session_options
    tile = backend.split("-")[1]
    opts = lean_session_options(ort) if tile == "default" else ort.SessionOptions()
    opts.intra_op_num_threads = threads
    runner = OnnxUpscaler(onnx_path.replace("TILE", tile), session_options=opts)
    call = lambda: runner.upscale(lr, scale=4)
elif backend == "upscale":
    call = lambda: scaleeq.upscale(model, lr, scale=4)
else:
    def call():
        with torch.no_grad():
            return model(lr, scale=4)
def status(key):  # MiB, from /proc/self/status (Linux)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
if sys.argv[8] == "1":
    import scaleeq.allocator
    scaleeq.allocator.keep_freed_memory()
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
out = call()  # warm-up
times = []
for _ in range(reps):
    t = time.perf_counter(); out = call(); times.append(time.perf_counter() - t)
np.save(sys.argv[6], out.numpy())
print(json.dumps({"times": times, "peak_rss_mib": status("VmHWM"), "rss_after_load_mib": base}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="apply scaleeq.allocator.keep_freed_memory() in every child (the CLI's setting)",
    )
    parser.add_argument("--backends", help="comma-separated subset (eager and upscale always run)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import numpy as np
    import torch

    from scaleeq.onnx import export_onnx

    tiles = ["256", "128", "split256", "split128", "default"]
    if args.backends:
        chosen = {b.strip() for b in args.backends.split(",")}
        tiles = [t for t in tiles if f"onnxruntime-{t}" in chosen]
    backends = ["eager", "upscale", *(f"onnxruntime-{t}" for t in tiles)]
    results: dict[str, dict] = {b: {"times": [], "peak_above_load_mib": []} for b in backends}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "edsr_baseline_star_TILE.onnx"
        scope: dict = {}
        exec(SETUP, scope)  # the children's model, weights included
        for t in tiles:
            target = str(onnx_path).replace("TILE", t)
            if t == "default":
                export_onnx(scope["model"], target)
                continue
            tile, split = int(t.removeprefix("split")), t.startswith("split")
            export_onnx(scope["model"], target, tile=tile, split=split)
        outs = {}
        for r in range(args.rounds):
            order = backends if r % 2 == 0 else backends[::-1]
            for b in order:
                out_file = Path(tmp) / f"{b}.npy"
                res = subprocess.run(
                    [sys.executable, "-c", CHILD, str(REPO / "src"), b, str(onnx_path),
                     str(args.reps), str(args.threads), str(out_file), SETUP,
                     "1" if args.keep_freed_memory else "0"],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                rep = json.loads(res.stdout.strip().splitlines()[-1])
                results[b]["times"] += rep["times"]
                results[b]["peak_above_load_mib"].append(
                    rep["peak_rss_mib"] - rep["rss_after_load_mib"]
                )
                outs[b] = np.load(out_file)
                print(f"round {r} {b}: {statistics.median(rep['times']):.3f}s", flush=True)
    summary = {}
    eager_t = statistics.median(results["eager"]["times"])
    eager_m = max(results["eager"]["peak_above_load_mib"])
    for b in backends:
        t = statistics.median(results[b]["times"])
        m = max(results[b]["peak_above_load_mib"])
        summary[b] = {
            "median_s": round(t, 4),
            "time_vs_eager": round(t / eager_t, 3),
            "peak_above_load_mib": round(m, 1),
            "memory_vs_eager": round(m / eager_m, 3),
        }
    diff = max(float(np.abs(outs[b] - outs["eager"]).max()) for b in backends[2:])
    report = {
        "task": "retrofit(EDSR baseline) + NK, 128x128 -> 512x512 (x4), batch 1, float32",
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "rounds": args.rounds,
        "reps": args.reps,
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "max_abs_diff_onnxruntime_vs_eager": diff,
        "load": args.note,
        "keep_freed_memory": args.keep_freed_memory,
        "summary": summary,
    }
    print(json.dumps(report, indent=2))
    print("\n| backend | median time | vs eager | peak memory above load | vs eager |")
    print("|---|---|---|---|---|")
    for b, s in summary.items():
        print(
            f"| {b} | {s['median_s']:.3f} s | {s['time_vs_eager']:.2f}x | "
            f"{s['peak_above_load_mib']:.0f} MiB | {s['memory_vs_eager']:.2f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
