"""Activation checkpointing of scale-aware segments (the scale is an argument, so recomputation
sees the same value)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["maybe_checkpoint"]


def maybe_checkpoint(fn: Any, *args: Any, mode: str | None) -> Any:
    """``fn(*args)``, through ``torch.utils.checkpoint`` when ``mode`` is set and gradients are
    enabled (positional arguments only: the reentrant variant takes no keywords)."""
    if mode is None or not torch.is_grad_enabled():
        return fn(*args)
    return checkpoint(fn, *args, use_reentrant=mode == "reentrant")
