"""The ambient scale: :func:`scale_context` lets drop-in layers that are called as
``forward(x)`` (for instance inside a pretrained ``nn.Sequential`` body) find the scale of the
current call.

It is backed by :mod:`contextvars`, so it is per thread and per asyncio task, and it is reset
when the ``with`` block exits, even on error. For users' own modules only: nothing scaleeq
builds reads it (the scale is an argument there).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from .scale import ScaleLike, parse_scale

__all__ = ["current_scale", "resolve_layer_scale", "scale_context", "scale_or_context"]

_SCALE_CONTEXT: contextvars.ContextVar[ScaleLike | None] = contextvars.ContextVar(
    "scaleeq_scale", default=None
)


@contextlib.contextmanager
def scale_context(scale: ScaleLike) -> Iterator[None]:
    """Set the scale that drop-in layers use when they are called without one.

    Layers such as :class:`~scaleeq.AdaptiveConv2d` and :class:`~scaleeq.AFEBlock` read it when
    called as ``layer(x)``; an explicit ``layer(x, scale)`` always wins. The value is validated
    on entry. Contexts nest; each thread and asyncio task sees only its own.

    Example:
        >>> import torch, scaleeq
        >>> conv = scaleeq.AdaptiveConv2d(4, 4, 3)
        >>> with scaleeq.scale_context(2.5):
        ...     y = torch.nn.Sequential(conv)(torch.randn(1, 4, 8, 8))
    """
    parse_scale(scale, name="scale_context(scale)")
    token = _SCALE_CONTEXT.set(scale)
    try:
        yield
    finally:
        _SCALE_CONTEXT.reset(token)


def current_scale() -> ScaleLike | None:
    """The scale set by the innermost active :func:`scale_context`, or ``None``."""
    return _SCALE_CONTEXT.get()


def scale_or_context(scale: ScaleLike | None, layer: str) -> ScaleLike:
    """``scale`` if given, else the context scale (:func:`current_scale`); a how-to error
    naming ``layer`` if neither.

    Raises:
        ValueError: no ``scale`` and no active :func:`scale_context`.
    """
    if scale is not None:
        return scale
    ctx = _SCALE_CONTEXT.get()
    if ctx is None:
        raise ValueError(
            f"{layer} needs a scale: call it as {layer}(x, scale=r), or run it inside "
            "`with scaleeq.scale_context(r):`; got no scale argument and no active scale "
            "context. (Under activation checkpointing the backward pass recomputes the layer "
            "after the `with` block has exited: pass the scale as an argument instead, e.g. "
            "checkpoint(layer, x, r).)"
        )
    return ctx


#: Former name of :func:`scale_or_context`, still importable.
resolve_layer_scale = scale_or_context
