"""The architecture families :func:`~scaleeq.retrofit` recognises: one adapter module each,
tried in the order of :data:`FAMILIES` (the first whose adapter matches the network's structure
wins; more specific structures come first, the generic pixel-shuffle adapter last).

Each module exports ``ADAPTERS``, a tuple of :class:`~scaleeq.retrofit.adapters.base.Adapter`
subclasses. Networks are recognised by structure (attribute names and module kinds), never by
class name. The list is explicit: importing a module registers nothing.
"""

from __future__ import annotations

import importlib

from torch import nn

from .base import Adapter

__all__ = ["FAMILIES", "Adapter", "adapter_class", "all_adapters", "detect"]

#: Adapter modules in matching order.
FAMILIES: tuple[str, ...] = (
    "atd",
    "dat",
    "rgt",
    "craft",
    "grl",
    "ipt",
    "swin",  # SwinIR, Swin2SR, HAT, DRCT (after the token families it would also match)
    "esrgan",
    "compact",
    "span",
    "swiftsrgan",
    "plksr",
    "mosr",
    "omnisr",
    "safmn",
    "ditn",
    "dctlsa",
    "seemore",
    "fdat",
    "moesr",
    "realcugan",
    "mmrealsr",
    "aurasr",
    "rcan",  # spandrel's RCAN (EDSR-PyTorch names, [0, 1] input, unshuffle front)
    "basicsr",  # BasicSR EDSR / RCAN
    "edsr_pytorch",  # EDSR-PyTorch EDSR / RCAN
    "custom",  # explicit body= / tail= (never matched by structure)
)


def all_adapters() -> list[type[Adapter]]:
    """Every adapter class, in matching order."""
    out: list[type[Adapter]] = []
    for family in FAMILIES:
        module = importlib.import_module(f"{__name__}.{family}")
        out.extend(module.ADAPTERS)
    return out


def adapter_class(name: str) -> type[Adapter]:
    """The adapter whose layout name (as stored in saved files) is ``name``."""
    for cls in all_adapters():
        if cls.name == name:
            return cls
    raise ValueError(
        f"unknown retrofit layout {name!r} (known: {[c.name for c in all_adapters()]})"
    )


def detect(model: nn.Module) -> type[Adapter]:
    """The adapter for ``model``'s structure.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: no adapter matches; the message lists the submodules found and how to name
            the parts with ``retrofit(model, body=..., tail=...)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for cls in all_adapters():
        if cls.matches(model):
            return cls
    children = [name for name, _ in model.named_children()]
    families = sorted({c.family for c in all_adapters() if c.family})
    raise ValueError(
        f"retrofit does not recognise {type(model).__name__}: it has the submodules {children}. "
        f"Recognised families: {', '.join(families)}. For another model, name its parts: "
        "retrofit(model, body='<submodule mapping the image to features>', "
        "tail='<fixed-scale tail>')"
    )
