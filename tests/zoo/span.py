"""spandrel's SPAN, tiny: x4 with its input normalisation, and x2 without it (``norm=False``:
the ``no_norm`` buffer spandrel detects)."""

from __future__ import annotations

from spandrel.architectures.SPAN import SPAN

from ._case import ZooCase


def _span(scale: int, norm: bool = True) -> SPAN:
    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale, norm=norm)


CASES = [
    ZooCase("SPAN-x4", "SPAN", lambda: _span(4), cut="upsampler", layout="span"),
    ZooCase("SPAN-x2-nonorm", "SPAN", lambda: _span(2, norm=False), cut="upsampler", layout="span"),
]
