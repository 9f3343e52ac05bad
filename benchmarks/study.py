"""Equal-budget study: bicubic features vs LIIF head vs Neural Kriging vs Neural Kriging + AFE.

The same backbone (EDSR layout), data, seed, steps and batch for four variants:

- ``a-bicubic``: :class:`~scaleeq.layers.baselines.BicubicFeatureUpsampler` (Table 2 baseline)
- ``b-liif``: :class:`~scaleeq.layers.baselines.LIIFUpsampler`
- ``c-nk``: :class:`~scaleeq.NeuralKrigingUpsampler`
- ``d-nk-afe``: Neural Kriging + AFE blocks in the body

All use ``retrofit(..., skip="bicubic")`` (the upsampler learns a residual over bicubic) so that a
short CPU budget trains anything at all. Evaluation: PSNR-Y on Set5 and Set14 at in-distribution
(x2, x3, x4), out-of-distribution (x6, x8, x12) and non-integer (x1.5, x2.5, x3.7) scales, the EQ_S
score at x2..x6 (Set5), and the cost of each upsampler: parameters, multiply-accumulates per
output pixel, time and peak memory to render 1024x1024 from a 256x256, 64-channel feature map
(each in a fresh subprocess; peak RSS growth).

Resumable: each variant's training state and results live in ``--out``; rerunning skips what is
done. Writes JSON, a Markdown report (``--report``) and plots (``--img``).

    python benchmarks/study.py --preset cpu            # ~10 minutes per variant on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import scaleeq
from scaleeq.data import ArbitraryScalePatches, list_images, load_image
from scaleeq.evaluate import evaluate, make_lr_hr
from scaleeq.layers.baselines import BicubicFeatureUpsampler, LIIFUpsampler
from scaleeq.metrics import eq_s
from scaleeq.models import EDSR
from scaleeq.training import train

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "data" / "benchmarks"
VARIANTS = ("a-bicubic", "b-liif", "c-nk", "d-nk-afe")
SCALES = (1.5, 2.0, 2.5, 3.0, 3.7, 4.0, 6.0, 8.0, 12.0)
PRESETS = {
    "cpu": {
        "feat": 32,
        "blocks": 8,
        "width": 64,
        "steps": 1500,
        "batch": 8,
        "patch": 32,
        "lr": 2e-4,
    },
    "gpu": {
        "feat": 64,
        "blocks": 16,
        "width": 256,
        "steps": 50_000,
        "batch": 16,
        "patch": 48,
        "lr": 2e-4,
    },
}


def make_upsampler(variant: str, feat: int, width: int) -> torch.nn.Module:
    if variant == "a-bicubic":
        return BicubicFeatureUpsampler(feat, hidden=width, layers=2)
    if variant == "b-liif":
        return LIIFUpsampler(feat, hidden=width, layers=4)
    return scaleeq.NeuralKrigingUpsampler(feat, hidden=width, blocks=1 if width <= 64 else 2)


def build(variant: str, cfg: dict) -> scaleeq.ArbitraryScaleSR:
    torch.manual_seed(0)
    net = EDSR(num_feat=cfg["feat"], num_block=cfg["blocks"], upscale=2, img_range=1.0)
    afe = "per_group" if variant == "d-nk-afe" else "none"
    up = make_upsampler(variant, cfg["feat"], cfg["width"])
    if cfg.get("zero_tail"):  # start every head at exactly the skip (bicubic)
        torch.nn.init.zeros_(up.tail.weight)
        torch.nn.init.zeros_(up.tail.bias)
    return scaleeq.retrofit(
        net,
        afe=afe,
        upsampler=up,
        skip=cfg.get("skip", "bicubic"),
    )


def training_images() -> list[torch.Tensor]:
    sys.path.insert(0, str(ROOT / "examples"))
    from _common import HELD_OUT, builtin_images

    return builtin_images(exclude=HELD_OUT)


def run_variant(variant: str, cfg: dict, out: Path, device: str) -> dict:
    done = out / f"{variant}.json"
    if done.exists():
        return json.loads(done.read_text())
    model = build(variant, cfg)
    data = ArbitraryScalePatches(
        training_images(), patch=cfg["patch"], samples_per_epoch=10_000, seed=0
    )
    t0 = time.perf_counter()
    result = train(model, data, steps=cfg["steps"], batch_size=cfg["batch"], lr=cfg["lr"],
                   lr_step=cfg["steps"] * 2 // 3, checkpoint=out / f"{variant}.state.pt",
                   checkpoint_every=250, device=device, log=lambda m: None)  # fmt: skip
    train_s = time.perf_counter() - t0
    model.eval()
    report = evaluate(model, str(BENCH), scales=SCALES, ssim=False, device=device, bicubic=True)
    set5 = [load_image(p) for p in list_images(BENCH / "Set5")]
    eqs = {}
    for r in (2.0, 3.0, 4.0, 5.0, 6.0):
        vals = []
        for img in set5:
            _, hr = make_lr_hr(img, r)
            vals.append(float(eq_s(model, hr[None].to(device), r)))
        eqs[str(r)] = statistics.mean(vals)
    record = {
        "variant": variant,
        "train_seconds_this_run": train_s,
        "steps": cfg["steps"],
        "final_loss": statistics.mean(result.losses[-50:]) if result.losses else None,
        "rows": report.rows,
        "eq_s": eqs,
        "upsampler_params": sum(p.numel() for p in model.upsampler.parameters()),
        "total_params": sum(p.numel() for p in model.parameters()),
    }
    done.write_text(json.dumps(record, indent=2))
    return record


def macs_per_pixel(up: torch.nn.Module, channels: int) -> float:
    """Multiply-accumulates per output pixel, counted by torch's FlopCounterMode on a 64x64
    render from a 32x32 map (plus the aggregation's ``C * k^2`` per pixel, a custom op)."""
    from torch.utils.flop_counter import FlopCounterMode

    feat = torch.randn(1, channels, 32, 32)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        up(feat, size=(64, 64))
    macs = counter.get_total_flops() / 2 / (64 * 64)
    if isinstance(up, scaleeq.NeuralKrigingUpsampler):
        macs += len(up.blocks) * up.hidden * up.kernel_size**2
    return macs


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def cost_case(variant: str, width: int, max_window_pixels: int | None = None) -> dict:
    """Render 1024x1024 from a 256x256x64 map with the default tiling/chunking (one process).

    Peak memory is the growth of the process's high-water resident set (``VmHWM``) over its
    resident set once the inputs exist. ``VmHWM`` starts afresh at ``exec``, whereas
    ``ru_maxrss`` keeps the parent's peak (this script's trained-model parent is large)."""
    up = make_upsampler(variant, 64, width).eval()
    feat = torch.randn(1, 64, 256, 256)
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    scaleeq.upscale(up, feat, size=(1024, 1024), max_window_pixels=max_window_pixels)
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    return {
        "variant": variant,
        "width": width,
        "params": sum(p.numel() for p in up.parameters()),
        "macs_per_pixel": macs_per_pixel(up, 64),
        "render_1024_seconds": seconds,
        "peak_growth_mib": (peak - base) / 1024,
    }


def plots(records: dict, img_dir: Path, prefix: str = "study") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    names = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, set_name in zip(axes, ("Set5", "Set14"), strict=True):
        for variant, rec in records.items():
            model = {
                r["scale"]: r["psnr_y"]
                for r in rec["rows"]
                if r["set"] == set_name and r["method"] == "model"
            }
            bic = {
                r["scale"]: r["psnr_y"]
                for r in rec["rows"]
                if r["set"] == set_name and r["method"] == "bicubic"
            }
            xs = sorted(model)
            ax.plot(xs, [model[x] - bic[x] for x in xs], marker="o", label=variant)
        ax.axvspan(4, 12.5, color="0.93")
        ax.set_title(f"{set_name}: PSNR-Y gain over bicubic")
        ax.set_xlabel("scale (shaded: out of distribution)")
        ax.set_ylabel("dB")
        ax.legend()
    fig.tight_layout()
    fig.savefig(img_dir / f"{prefix}_gain.png", dpi=110)
    names.append(f"{prefix}_gain.png")
    fig, ax = plt.subplots(figsize=(5, 4))
    for variant, rec in records.items():
        xs = sorted(float(k) for k in rec["eq_s"])
        ax.plot(xs, [rec["eq_s"][str(x)] for x in xs], marker="o", label=variant)
    ax.set_title("EQ_S (Set5), higher = more scale-equivariant")
    ax.set_xlabel("scale")
    ax.set_ylabel("dB")
    ax.legend()
    fig.tight_layout()
    fig.savefig(img_dir / f"{prefix}_eqs.png", dpi=110)
    names.append(f"{prefix}_eqs.png")
    plt.close("all")
    return names


def markdown(records: dict, costs: list[dict], cfg: dict, preset: str) -> str:
    lines = [f"Preset `{preset}`: EDSR body {cfg['blocks']} x {cfg['feat']}, "
             f"upsampler width {cfg['width']}, "
             f"{cfg['steps']} steps, batch {cfg['batch']}, "
             f"{cfg['patch']}x{cfg['patch']} LR patches, Adam {cfg['lr']}, "
             f"skip {cfg.get('skip', 'bicubic')}"
             + (', zero-initialised output layers' if cfg.get('zero_tail') else '')
             + ".", ""]  # fmt: skip
    for set_name in ("Set5", "Set14"):
        lines += [
            f"**{set_name}, PSNR-Y (dB)**",
            "",
            "| variant | " + " | ".join(f"x{s:g}" for s in SCALES) + " |",
            "|---|" + "---:|" * len(SCALES),
        ]
        first = next(iter(records.values()))
        bic = {
            r["scale"]: r["psnr_y"]
            for r in first["rows"]
            if r["set"] == set_name and r["method"] == "bicubic"
        }
        lines.append("| bicubic | " + " | ".join(f"{bic[s]:.2f}" for s in SCALES) + " |")
        for variant, rec in records.items():
            vals = {
                r["scale"]: r["psnr_y"]
                for r in rec["rows"]
                if r["set"] == set_name and r["method"] == "model"
            }
            lines.append(f"| {variant} | " + " | ".join(f"{vals[s]:.2f}" for s in SCALES) + " |")
        lines.append("")
    lines += [
        "**EQ_S (Set5, dB)**",
        "",
        "| variant | x2 | x3 | x4 | x5 | x6 | upsampler params | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, rec in records.items():
        e = rec["eq_s"]
        lines.append(
            f"| {variant} | "
            + " | ".join(f"{e[str(float(r))]:.2f}" for r in (2, 3, 4, 5, 6))
            + f" | {rec['upsampler_params']:,} | {rec['train_seconds_this_run']:.0f} |"
        )
    if costs:
        lines += ["", "**Upsampler cost: render 1024x1024 from 256x256x64 (default "
                  "tiling/chunking, CPU, one process per case, median of interleaved rounds)**", "",
                  "| variant | width | params | MACs / output pixel | time s | peak growth MiB |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for c in costs:
            lines.append(
                f"| {c['variant']} | {c['width']} | {c['params']:,} | "
                f"{c['macs_per_pixel'] / 1e6:.3f} M | {c['render_1024_seconds']:.1f} | "
                f"{c['peak_growth_mib']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (preset's if unset)")
    p.add_argument(
        "--skip",
        choices=["bicubic", "none"],
        default="bicubic",
        help="retrofit skip: the upsampler learns a residual over bicubic, or the whole image",
    )
    p.add_argument(
        "--zero-tail", action="store_true", help="zero-initialise each upsampler's output layer"
    )
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "study"))
    p.add_argument("--report", default=None, help="write the Markdown report here")
    p.add_argument("--img", default=str(ROOT / "docs" / "img"))
    p.add_argument(
        "--cost-widths", default="64,256", help="upsampler widths for the cost table ('' to skip)"
    )
    p.add_argument(
        "--cost-repeats", type=int, default=3, help="rounds of cost cases (medians reported)"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(  # one cost case: VARIANT WIDTH [MAX_WINDOW_PIXELS]
        "--cost-case", nargs="+", metavar="ARG", help="internal: one cost case"
    )
    args = p.parse_args(argv)
    if args.cost_case:
        variant, width, *tile = args.cost_case
        print(json.dumps(cost_case(variant, int(width), int(tile[0]) if tile else None)))
        return
    cfg = dict(PRESETS[args.preset])
    if args.steps:
        cfg["steps"] = args.steps
    if args.lr:
        cfg["lr"] = args.lr
    cfg["skip"] = args.skip
    cfg["zero_tail"] = args.zero_tail
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = {}
    for variant in args.variants.split(","):
        print(f"== {variant}", flush=True)
        records[variant] = run_variant(variant, cfg, out, args.device)
    costs = []
    cost_file = out / "costs.json"
    if args.cost_widths:
        costs = json.loads(cost_file.read_text()) if cost_file.exists() else []
        have = {(c["variant"], c["width"]) for c in costs}
        todo = [
            (variant, width)
            for width in (int(w) for w in args.cost_widths.split(","))
            for variant in ("a-bicubic", "b-liif", "c-nk")
            if (variant, width) not in have
        ]
        runs: dict[tuple[str, int], list[dict]] = {case: [] for case in todo}
        for _ in range(args.cost_repeats):  # rounds interleave the cases: drift hits all alike
            for variant, width in todo:
                proc = subprocess.run(
                    [sys.executable, __file__, "--cost-case", variant, str(width)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[(variant, width)].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        for case in todo:
            record = dict(runs[case][0])
            for key in ("render_1024_seconds", "peak_growth_mib"):
                values = [r[key] for r in runs[case]]
                record[key] = statistics.median(values)
                record[key + "_runs"] = values
            costs.append(record)
        cost_file.write_text(json.dumps(costs, indent=2))
    summary = {"preset": args.preset, "config": cfg, "variants": records, "costs": costs}
    (out / "study.json").write_text(json.dumps(summary, indent=2))
    text = markdown(records, costs, cfg, args.preset)
    print(text)
    if args.report:
        Path(args.report).write_text(text)
    if args.img:
        plots(records, Path(args.img), prefix=out.name)


if __name__ == "__main__":
    main()
