"""The recognised layouts (kept for imports written before :mod:`scaleeq.retrofit.adapters`).

Each layout is an adapter of :mod:`scaleeq.retrofit.adapters`; its ``name`` is what saved files
store as ``"layout"``.
"""

from __future__ import annotations

from torch import nn

from .adapters import adapter_class, detect
from .adapters.base import Adapter

__all__ = ["Layout", "detect_layout", "layout_for"]

Layout = Adapter


def detect_layout(model: nn.Module) -> str:
    """Name the layout of ``model`` (``"swin"``, ``"basicsr"``, ``"esrgan"``, ...).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: no layout matches (the message says how to name the parts).
    """
    return detect(model).name


def layout_for(name: str, *, body: str | None = None) -> Adapter:
    """A fresh adapter for the layout called ``name``."""
    return adapter_class(name)(body=body)
