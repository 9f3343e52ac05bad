"""How one axis of an IIIF request maps onto a render: which pixels of which zoom level's
whole-image render answer it (upscaled requests), or which source interval is resampled
(native-size and downscaled ones)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AxisMap", "map_axis"]


def _div_round(a: int, b: int) -> int:
    """``round(a / b)`` with halves up, for integers ``a >= 0``, ``b > 0``."""
    return (2 * a + b) // (2 * b)


@dataclass(frozen=True)
class AxisMap:
    """One axis of a request mapped onto a render.

    ``full`` is the zoom level's whole-image length on this axis. If ``model`` is True, the
    response's pixels are ``[start, start + length)`` of a model render of length ``full``;
    otherwise ``(lo, hi)`` is the region in source pixels (floats) to resample to ``length``.
    """

    full: int
    model: bool
    start: int
    length: int
    lo: float
    hi: float


def map_axis(src: int, virtual: int, x: int, w: int, out: int) -> AxisMap:
    """Map region ``[x, x + w)`` of an axis of ``virtual`` pixels (``src`` pixels in the source;
    ``virtual = k * src`` for a ``@kx`` image) returned at ``out`` pixels.

    >>> map_axis(64, 64, 20, 20, 50)        # x2.5: pixels 50..99 of a 160-pixel render
    AxisMap(full=160, model=True, start=50, length=50, lo=20.0, hi=40.0)
    >>> map_axis(64, 64, 0, 64, 32).model   # downscaled: resampled, not rendered
    False
    """
    full = _div_round(virtual * out, w)
    lo, hi = x * src / virtual, (x + w) * src / virtual
    if full > src:
        start = min(_div_round(x * full, virtual), full - out)
        return AxisMap(full, True, max(0, start), out, lo, hi)
    return AxisMap(full, False, 0, out, lo, hi)
