"""Shared command line, data and run logic of the example training scripts.

Every option is a command-line flag (no config files). ``--preset`` picks the defaults:
``paper`` is the paper's recipe (48x48 LR patches, r ~ U(1, 4), batch 16, Adam 2e-4 halved every
200k of 1000k iterations), ``demo`` trains a small model on built-in images on the CPU in a few
minutes. Under ``torchrun --nproc_per_node=N`` the scripts train with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from scaleeq.data import ArbitraryScalePatches
from scaleeq.evaluate import EvalReport, evaluate
from scaleeq.training import train

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO.parent / "shared" / "data" / "benchmarks"

# scikit-image's bundled sample photographs (no download): RGB ones first
BUILTIN = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
]
HELD_OUT = "coffee"

PRESETS: dict[str, dict] = {
    "paper": {
        "steps": 1_000_000,
        "batch": 16,
        "patch": 48,
        "lr": 2e-4,
        "lr_step": 200_000,
        "eval_every": 50_000,
        "ckpt_every": 10_000,
    },
    # the built-in model (``scaleeq.pretrained``): CBSD68 + built-in photographs,
    # ~1.5-2 h on 2 cores
    "cbsd": {
        "steps": 3600,
        "batch": 16,
        "patch": 40,
        "lr": 4e-4,
        "lr_step": 1700,
        "eval_every": 0,
        "ckpt_every": 200,
        "ema": 0.999,
        "per_axis": 0.3,
        "data": f"{REPO.parent / 'shared' / 'data' / 'train' / 'CBSD68'},builtin",
        "eval_scales": "2,3,4",
    },
    "demo": {
        "steps": 1500,
        "batch": 8,
        "patch": 32,
        "lr": 2e-4,
        "lr_step": 1000,
        "eval_every": 0,
        "ckpt_every": 500,
    },
}


def builtin_images(exclude: str | None = None) -> list[torch.Tensor]:
    """scikit-image's bundled sample photographs as ``(3, H, W)`` tensors in [0, 1], in
    ``BUILTIN`` order (all of them ship with scikit-image >= 0.19)."""
    try:
        from skimage import data as skdata
    except ImportError as e:
        raise SystemExit("--preset demo needs scikit-image: pip install 'scaleeq[examples]'") from e
    import numpy as np

    out = []
    for name in BUILTIN:
        if name == exclude or not hasattr(skdata, name):
            continue
        a = getattr(skdata, name)()
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        out.append(
            torch.from_numpy(np.ascontiguousarray(a[..., :3])).permute(2, 0, 1).float() / 255
        )
    return out


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--preset", choices=sorted(PRESETS), default="paper", help="defaults for the options below"
    )
    p.add_argument(
        "--data",
        help="folder(s) of HR training images, comma-separated (e.g. DIV2K/train_HR); "
        "'builtin' adds scikit-image's photographs; demo: built-in images",
    )
    p.add_argument(
        "--per-axis",
        type=float,
        help="fraction of samples with independent r_h, r_w (non-square scales); default 0",
    )
    p.add_argument(
        "--eval-data", help="benchmark folder(s) (default: ../shared/data/benchmarks if present)"
    )
    p.add_argument(
        "--eval-scales", default="2,3,4,6,8,12", help="in- and out-of-distribution scales"
    )
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--patch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-step", type=int, help="halve the learning rate every N steps")
    p.add_argument("--ema", type=float, help="EMA decay of the weights, e.g. 0.999")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--ckpt-every", type=int)
    p.add_argument(
        "--out", default="runs/run", help="folder for the training state, model and results"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),
        default="fp32",
        help="training precision (bf16: autocast with float32 master weights; auto: bf16 where "
        "the hardware computes it natively)",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    default_scales = args.eval_scales == parser("").get_default("eval_scales")
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key, None) is None or (key == "eval_scales" and default_scales):
            setattr(args, key, value)
    if args.preset == "demo" and default_scales:
        args.eval_scales = "2,3,4"
    if args.per_axis is None:
        args.per_axis = 0.0
    return args


def training_images(spec: str) -> list[torch.Tensor]:
    """Decode every image of the comma-separated folders in ``spec`` (``builtin``: scikit-image's
    photographs, the synthetic colour wheel left out) to ``(3, H, W)`` tensors."""
    from scaleeq.data import list_images, load_image

    out: list[torch.Tensor] = []
    for part in (s.strip() for s in spec.split(",")):
        if part == "builtin":
            out += [
                img
                for name, img in zip(BUILTIN, builtin_images(), strict=True)
                if name != "colorwheel"
            ]
        elif part:
            out += [load_image(path) for path in list_images(part)]
    return out


def setup_distributed(device: str) -> tuple[int, int, str]:
    """Initialise torch.distributed under torchrun (gloo on CPU, nccl on CUDA)."""
    if "RANK" not in os.environ or dist.is_initialized():
        return 0, 1, device
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return rank, dist.get_world_size(), device


def run(
    args: argparse.Namespace,
    build: Callable[[argparse.Namespace], nn.Module],
    save: Callable[[nn.Module, Path], None],
) -> EvalReport | None:
    """Train ``build(args)`` on the Fig. 4 pipeline, evaluate, save; returns the final report."""
    args = resolve(args)
    rank, _world, device = setup_distributed(args.device)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if args.data and ("," in args.data or args.data == "builtin"):
        source: object = training_images(args.data)
    elif args.data:
        source = args.data
    elif args.preset == "demo":
        source = builtin_images(exclude=HELD_OUT)
    else:
        raise SystemExit(
            "--data is required (a folder of HR training images), or use --preset demo"
        )
    dataset = ArbitraryScalePatches(
        source,
        patch=args.patch,
        per_axis=args.per_axis,
        samples_per_epoch=max(1000, args.batch * 100),
        seed=args.seed,
    )
    eval_data = args.eval_data or (str(SHARED_BENCHMARKS) if SHARED_BENCHMARKS.is_dir() else None)
    if eval_data is None:  # no benchmark folder: a built-in photograph held out of training
        held_out = [
            img for name, img in zip(BUILTIN, builtin_images(), strict=False) if name == HELD_OUT
        ]
        eval_data = {"held-out": held_out}
    scales = [float(s) for s in args.eval_scales.split(",")]

    def evaluate_fn(model: nn.Module) -> EvalReport:
        report = evaluate(
            model, eval_data, scales=scales, progress=not args.no_progress, device=device
        )
        print(report.table(), flush=True)
        return report

    model = build(args)
    result = train(
        model, dataset, steps=args.steps, batch_size=args.batch, lr=args.lr, lr_step=args.lr_step,
        ema_decay=args.ema, checkpoint=out / "train_state.pt", checkpoint_every=args.ckpt_every,
        evaluate_fn=evaluate_fn, eval_every=args.eval_every, device=device,
        progress=not args.no_progress, precision=args.precision,
    )  # fmt: skip
    if dist.is_initialized():
        dist.destroy_process_group()
    if rank != 0:
        return None
    report = result.evaluations[-1][1] if result.evaluations else None
    save(model, out)
    if report is not None:
        (out / "results.json").write_text(report.to_json())
        (out / "results.md").write_text(report.markdown() + "\n")
        print(json.dumps({"out": str(out), "steps": result.end_step}))
    return report
