"""onnxruntime (CPU): float16 vs float32 ONNX exports of the built-in model.

``scaleeq.pretrained()`` is exported twice with ``scaleeq.onnx.export_onnx`` (the default split
export: features graph + render graph of 128 x 128 tiles), with ``precision="fp32"`` and
``precision="fp16"``, and compared:

- **file sizes** of both graphs;
- **time and memory**: ``OnnxUpscaler(path).upscale(lr, scale=4)`` of a 128 x 128 crop of
  Set5 ``baby`` (-> 512 x 512), each precision in its own subprocess (so the peak memory is its
  own), alternating over ``--rounds`` rounds; a subprocess opens the file, warms up once, then
  times ``--reps`` calls. Median time; peak RSS (``VmHWM``, reset after opening) above the RSS
  after opening (Linux only: it reads ``/proc/self``). Every child applies
  :func:`scaleeq.allocator.keep_freed_memory` (the ``scaleeq`` command's setting);
- **agreement**: PSNR of the fp16 output against the fp32 output (clamped to [0, 1]) and their
  largest difference;
- **what onnxruntime's CPU provider does with float16**: the ``Cast`` nodes it inserts (graph
  optimisations off) for float16 operators it has no CPU kernel for, and the operator types
  they feed;
- ``--reference``: the same comparison with ONNX's reference evaluator (``onnx.reference``),
  which computes float16 operators in float16, on a 24 x 24 crop at x2 (slow: about a minute
  per precision) -- what a runtime with float16 kernels computes, approximately;
- ``--set5``: PSNR-Y / SSIM-Y on Set5 at x2 and x4 (:func:`scaleeq.evaluate` with the
  ``OnnxUpscaler`` as the model) for both files.

Usage::

    python benchmarks/onnx_fp16.py --reference --set5 --json benchmarks/results/onnx_fp16_cpu.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/benchmarks")

CHILD = r"""
import json, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
path, image, reps, threads, out_file = sys.argv[2:7]
reps, threads = int(reps), int(threads)
torch.set_num_threads(threads)
import onnxruntime as ort
import scaleeq.allocator
from scaleeq.images import load_image
from scaleeq.onnx import OnnxUpscaler
from scaleeq.onnx.files import lean_session_options
scaleeq.allocator.keep_freed_memory()
lr = load_image(image)[None, :, :128, :128].contiguous()
opts = lean_session_options(ort)
opts.intra_op_num_threads = threads
runner = OnnxUpscaler(path, session_options=opts)
def status(key):  # MiB, from /proc/self/status (Linux)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
out = runner.upscale(lr, scale=4)  # warm-up
times = []
for _ in range(reps):
    t = time.perf_counter()
    out = runner.upscale(lr, scale=4)
    times.append(time.perf_counter() - t)
np.save(out_file, out.numpy())
print(json.dumps({"times": times, "peak_rss_mib": status("VmHWM"), "rss_after_load_mib": base}))
"""


def _psnr(a, b) -> float:
    import numpy as np

    a, b = np.clip(a, 0, 1).astype(np.float64), np.clip(b, 0, 1).astype(np.float64)
    return float(10 * np.log10(1 / np.mean((a - b) ** 2)))


def _inserted_casts(path: Path) -> dict:
    """The ``Cast`` nodes onnxruntime's CPU provider adds to ``path`` (optimisations off, so
    only those it inserts around float16 operators without a CPU kernel) and the operator types
    they feed."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.optimized_model_filepath = str(Path(tmp) / "session.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        session = onnx.load(opts.optimized_model_filepath).graph
    written = {n.name for n in onnx.load(str(path)).graph.node}
    inserted = {
        o for n in session.node if n.op_type == "Cast" and n.name not in written for o in n.output
    }
    fed = collections.Counter(
        n.op_type for n in session.node if n.op_type != "Cast" and set(n.input) & inserted
    )
    return {"inserted_casts": len(inserted), "operators_fed_by_them": dict(fed.most_common())}


def _reference(files: dict[str, Path], image: Path) -> dict:
    """fp16 vs fp32 in ONNX's reference evaluator on a 24 x 24 crop at x2."""
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    from scaleeq.images import load_image
    from scaleeq.onnx import features_path

    lr = load_image(image)[None, :, 100:124, 100:124].numpy()
    scale = np.array([2.0, 2.0])
    outs, seconds = {}, {}
    for name, path in files.items():
        t = time.perf_counter()
        (feat,) = ReferenceEvaluator(str(features_path(path))).run(
            ["feat"], {"lr": lr, "scale": scale}
        )
        (sr,) = ReferenceEvaluator(str(path)).run(
            ["sr"], {"feat": feat, "scale": scale, "origin": np.array([0, 0], dtype=np.int64)}
        )
        outs[name], seconds[name] = sr[:, :, :48, :48], round(time.perf_counter() - t, 1)
    return {
        "input": f"{image.name} [100:124, 100:124], x2 -> 48 x 48",
        "psnr_fp16_vs_fp32_db": round(_psnr(outs["fp16"], outs["fp32"]), 2),
        "max_abs_diff": float(np.abs(outs["fp16"] - outs["fp32"]).max()),
        "seconds": seconds,
    }


def _set5(files: dict[str, Path], folder: Path) -> list[dict]:
    from scaleeq.evaluate import evaluate
    from scaleeq.onnx import OnnxUpscaler

    rows = []
    for name, path in files.items():
        t = time.perf_counter()
        report = evaluate(OnnxUpscaler(path), {"Set5": folder}, scales=(2, 4), progress=False)
        took = round(time.perf_counter() - t, 1)
        for row in report.rows:
            if row["method"] == "model" or name == "fp32":
                method = f"onnx-{name}" if row["method"] == "model" else row["method"]
                rows.append({**row, "method": method, "seconds": took})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with Set5/HR")
    parser.add_argument("--reference", action="store_true", help="the reference evaluator run")
    parser.add_argument("--set5", action="store_true", help="PSNR-Y / SSIM-Y on Set5, x2 and x4")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import numpy as np
    import onnxruntime
    import torch

    import scaleeq
    from scaleeq.onnx import export_onnx, features_path

    image = args.data / "Set5" / "HR" / "baby.png"
    load = [round(x, 2) for x in os.getloadavg()]
    report: dict = {
        "task": "scaleeq.pretrained(), split export (render tile 128 x 128), OnnxUpscaler, "
        "128x128 crop of Set5 baby -> 512x512 (x4), batch 1",
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "rounds": args.rounds,
        "reps": args.reps,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "note": args.note,
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = scaleeq.pretrained()
        files, sizes, export_s = {}, {}, {}
        for precision in ("fp32", "fp16"):
            t = time.perf_counter()
            path = export_onnx(
                model, Path(tmp) / f"edsr_star_{precision}.onnx", precision=precision
            )
            export_s[precision] = round(time.perf_counter() - t, 1)
            files[precision] = path
            sizes[precision] = {
                "render_bytes": path.stat().st_size,
                "features_bytes": features_path(path).stat().st_size,
            }
            sizes[precision]["total_bytes"] = sum(sizes[precision].values())
        report["file_sizes"] = sizes
        report["size_ratio_fp16_vs_fp32"] = round(
            sizes["fp16"]["total_bytes"] / sizes["fp32"]["total_bytes"], 3
        )
        report["export_seconds"] = export_s
        report["onnxruntime_cpu_casts"] = {
            graph: _inserted_casts(p)
            for graph, p in (
                ("features", features_path(files["fp16"])),
                ("render", files["fp16"]),
            )
        }
        results = {p: {"times": [], "peak": []} for p in files}
        outs = {}
        for r in range(args.rounds):
            order = list(files) if r % 2 == 0 else list(files)[::-1]
            for precision in order:
                out_file = Path(tmp) / f"{precision}.npy"
                res = subprocess.run(
                    [sys.executable, "-c", CHILD, str(REPO / "src"), str(files[precision]),
                     str(image), str(args.reps), str(args.threads), str(out_file)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                rep = json.loads(res.stdout.strip().splitlines()[-1])
                results[precision]["times"] += rep["times"]
                results[precision]["peak"].append(rep["peak_rss_mib"] - rep["rss_after_load_mib"])
                outs[precision] = np.load(out_file)
                print(f"round {r} {precision}: {statistics.median(rep['times']):.3f}s", flush=True)
        report["summary"] = {
            p: {
                "median_s": round(statistics.median(v["times"]), 3),
                "min_s": round(min(v["times"]), 3),
                "peak_above_load_mib": round(max(v["peak"]), 1),
            }
            for p, v in results.items()
        }
        report["time_ratio_fp16_vs_fp32"] = round(
            report["summary"]["fp16"]["median_s"] / report["summary"]["fp32"]["median_s"], 3
        )
        report["output_shape"] = list(outs["fp32"].shape)
        report["psnr_fp16_vs_fp32_db"] = round(_psnr(outs["fp16"], outs["fp32"]), 2)
        report["max_abs_diff_fp16_vs_fp32"] = float(np.abs(outs["fp16"] - outs["fp32"]).max())
        if args.reference:
            report["reference_evaluator"] = _reference(files, image)
        if args.set5:
            report["set5"] = _set5(files, args.data / "Set5" / "HR")
    report["loadavg_start_end"] = [load, [round(x, 2) for x in os.getloadavg()]]
    print(json.dumps(report, indent=2))
    s = report["summary"]
    print("\n| precision | file size (both graphs) | median time | peak memory above load |")
    print("|---|---|---|---|")
    for p in files:
        print(
            f"| {p} | {sizes[p]['total_bytes'] / 2**20:.2f} MiB | {s[p]['median_s']:.2f} s | "
            f"{s[p]['peak_above_load_mib']:.0f} MiB |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
