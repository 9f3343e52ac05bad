"""spandrel's MoSR, tiny, one case per upsampler: pixel shuffle (x4), geometric-ensemble pixel
shuffle (x2) and DySample (x4)."""

from __future__ import annotations

from spandrel.architectures.MoSR import MoSR

from ._case import ZooCase


def _mosr(scale: int, upsampler: str) -> MoSR:
    return MoSR(
        in_ch=3,
        out_ch=3,
        upscale=scale,
        n_block=2,
        dim=16,
        upsampler=upsampler,
        kernel_size=7,
        expansion_ratio=1.5,
        conv_ratio=1.0,
    )


CASES = [
    ZooCase("MoSR-ps-x4", "MoSR", lambda: _mosr(4, "ps"), cut="upsampler", layout="mosr"),
    ZooCase("MoSR-gps-x2", "MoSR", lambda: _mosr(2, "gps"), cut="upsampler", layout="mosr"),
    ZooCase("MoSR-dys-x4", "MoSR", lambda: _mosr(4, "dys"), cut="upsampler", layout="mosr"),
]
