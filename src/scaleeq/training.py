"""The paper's training recipe as one function: ``train(model, dataset, steps=...)``.

L1 loss on windows of each sample's HR grid (:class:`~scaleeq.data.ArbitraryScalePatches`,
rendered through the upsampler's exact windowed path), Adam (0.9, 0.999), learning rate halved
every ``lr_step`` iterations, optional EMA of the weights. Checkpoints are written atomically
and resuming is exact: batch ``t`` is a pure function of ``(dataset seed, t)``, and the
optimizer, scheduler, EMA and RNG states are restored, so the loss sequence after a resume
equals an uninterrupted run (on the CPU). Under ``torchrun`` (an initialised
``torch.distributed`` process group) the model is wrapped in DistributedDataParallel and each
rank takes its share of every global batch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ._checks import check_int, check_positive_float
from ._io import atomic_write
from .data import ArbitraryScalePatches
from .precision import autocast, select_precision

__all__ = ["TrainResult", "save_atomic", "train"]


@dataclass
class TrainResult:
    """Per-step mean loss (over all ranks) of the steps run in this call, and where it ended."""

    losses: list[float] = field(default_factory=list)
    start_step: int = 0
    end_step: int = 0
    evaluations: list[tuple[int, object]] = field(default_factory=list)


def save_atomic(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` written atomically (:func:`scaleeq._io.atomic_write`); the folder is
    created if missing."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _batch(
    dataset: ArbitraryScalePatches, step: int, batch_size: int, rank: int, world: int
) -> dict[str, torch.Tensor]:
    per_rank = batch_size // world
    first = step * batch_size + rank * per_rank
    n = len(dataset)
    items = [dataset.sample(g // n, g % n) for g in range(first, first + per_rank)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def train(
    model: nn.Module,
    dataset: ArbitraryScalePatches,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 2e-4,
    lr_step: int = 200_000,
    lr_gamma: float = 0.5,
    ema_decay: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    evaluate_fn: Callable[[nn.Module], object] | None = None,
    eval_every: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
    precision: str = "fp32",
) -> TrainResult:
    """Train ``model`` for ``steps`` iterations in total (resuming from ``checkpoint`` if it
    exists).

    Args:
        model: called as ``model(lr, scale=(B, 2), window=(top, left, P, P))`` (e.g. an
            ``ArbitraryScaleSR``, ``EQSR``).
        dataset: Fig. 4 patches.
        steps: total iterations (a resumed run continues up to it).
        batch_size: global batch (split over ranks; must be divisible by the world size).
        lr, lr_step, lr_gamma: Adam learning rate, halved (``lr_gamma``) every ``lr_step`` steps.
        ema_decay: keep an exponential moving average of the weights (e.g. 0.999); it is what
            ``evaluate_fn`` sees and what the checkpoint's ``"ema"`` holds.
        checkpoint: training-state file (written atomically every ``checkpoint_every`` steps and
            at the end, by rank 0).
        evaluate_fn: called with the (EMA) model every ``eval_every`` steps and at the end, on
            rank 0; its results are returned in ``TrainResult.evaluations``.
        device: training device of this rank.
        progress: tqdm bar with the loss and speed (rank 0, if tqdm is installed).
        log: where one-line messages go.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"auto"`` (bf16 where the hardware
            computes it natively, :mod:`scaleeq.precision`): the forward pass runs under
            ``torch.autocast`` at that precision; the weights, their gradients and the optimizer
            state stay float32 (master weights) and the loss is taken in float32. ``"fp16"`` is
            refused: it needs loss scaling, which this loop does not do.
    """
    check_int(steps, "steps", minimum=0)
    check_int(batch_size, "batch_size")
    check_int(checkpoint_every, "checkpoint_every", minimum=0)
    check_int(eval_every, "eval_every", minimum=0)
    check_int(lr_step, "lr_step")
    check_positive_float(lr, "lr")
    precision = select_precision(precision, device)  # once: "auto" becomes what it picks
    if precision == "fp16":
        raise ValueError(
            "precision='fp16' is not supported for training (it needs loss scaling); use 'bf16'"
        )
    if ema_decay is not None and not (isinstance(ema_decay, float) and 0 < ema_decay < 1):
        raise ValueError(f"ema_decay must be a float in (0, 1) or None, got {ema_decay!r}")
    if checkpoint is not None and Path(checkpoint).is_dir():  # fail now, not at the first save
        raise ValueError(f"checkpoint {str(checkpoint)!r} is a directory; give a file path")
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} must be divisible by the world size {world}")
    device = torch.device(device)
    model.to(device)
    net: nn.Module = nn.parallel.DistributedDataParallel(model) if distributed else model
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if ema_decay else None
    result = TrainResult()
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)
            model.load_state_dict(state["model"])
        except Exception as e:  # truncated, foreign or mismatched: say what to do
            raise ValueError(
                f"cannot resume from {str(checkpoint)!r} ({type(e).__name__}: {e}); delete it to "
                "start over, or pass another checkpoint path"
            ) from e
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema = {k: v.to(device) for k, v in state["ema"].items()}
        torch.set_rng_state(state["rng"])  # loaded on the CPU: the generator state stays there
        start = int(state["step"])
        if rank == 0:
            log(f"resumed from {checkpoint} at step {start}")
    result.start_step = result.end_step = start

    def save(step: int) -> None:
        if checkpoint is not None and rank == 0:
            save_atomic(
                {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "ema": ema, "step": step,
                 "rng": torch.get_rng_state()},
                checkpoint,
            )  # fmt: skip

    def run_eval(step: int) -> None:
        if evaluate_fn is None or rank != 0:
            return
        if ema is not None:
            live = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(ema)
        result.evaluations.append((step, evaluate_fn(model)))
        if ema is not None:
            model.load_state_dict(live)
        model.train()

    bar = None
    if progress and rank == 0:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=start, desc="train", unit="it", dynamic_ncols=True)
        except ImportError:
            bar = None
    model.train()
    patch = dataset.patch
    t0 = time.perf_counter()
    for step in range(start, steps):
        b = {k: v.to(device) for k, v in _batch(dataset, step, batch_size, rank, world).items()}
        with autocast(precision, device):
            out = net(
                b["lr"], scale=b["scale"], window=(b["top"].cpu(), b["left"].cpu(), patch, patch)
            )
        loss = (out.float() - b["hr"]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema is not None:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].mul_(ema_decay).add_(v.detach(), alpha=1 - ema_decay)
                    else:
                        ema[k].copy_(v)
        value = loss.detach()
        if distributed:
            dist.all_reduce(value)
            value /= world
        value = float(value)
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the loss became {value} at step {step}; lower the learning rate"
            )
        result.losses.append(value)
        result.end_step = step + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{sched.get_last_lr()[0]:.1e}")
        if checkpoint_every and (step + 1) % checkpoint_every == 0:
            save(step + 1)
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            run_eval(step + 1)
    if bar is not None:
        bar.close()
    if rank == 0 and steps > start:
        log(
            f"trained steps {start}..{steps} in {time.perf_counter() - t0:.0f}s, "
            f"last loss {result.losses[-1]:.4f}"
        )
    save(result.end_step)
    run_eval(result.end_step)
    return result
