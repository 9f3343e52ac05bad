"""spandrel's ESRGAN (RRDBNet), tiny: x4, x2 (one upconv), ESRGAN+ (``plus``), and the
Real-ESRGAN pixel-unshuffle fronts of x2 (stride 2) and x1 (stride 4) models."""

from __future__ import annotations

from spandrel.architectures.ESRGAN import ESRGAN

from ._case import ZooCase


def _esrgan(scale: int, *, shuffle: int | None = None, plus: bool = False) -> ESRGAN:
    """``scale`` is the network's own upsampling (4 behind a front of ``shuffle``, as spandrel
    builds Real-ESRGAN x2 / x1 models); the input takes ``3 * shuffle**2`` channels then."""
    in_nc = 3 * (shuffle or 1) ** 2
    return ESRGAN(
        in_nc=in_nc,
        out_nc=3,
        num_filters=8,
        num_blocks=2,
        scale=scale,
        plus=plus,
        shuffle_factor=shuffle,
    )


CASES = [
    ZooCase("ESRGAN-x4", "ESRGAN", lambda: _esrgan(4), cut="model.2", layout="esrgan"),
    ZooCase("ESRGAN-x2", "ESRGAN", lambda: _esrgan(2), cut="model.2", layout="esrgan"),
    ZooCase(
        "ESRGAN-x4-plus", "ESRGAN", lambda: _esrgan(4, plus=True), cut="model.2", layout="esrgan"
    ),
    ZooCase(
        "ESRGAN-x2-unshuffle",
        "ESRGAN",
        lambda: _esrgan(4, shuffle=2),
        cut="model.2",
        layout="esrgan",
        stride=2,
    ),
    ZooCase(
        "ESRGAN-x1-unshuffle",
        "ESRGAN",
        lambda: _esrgan(4, shuffle=4),
        cut="model.2",
        layout="esrgan",
        stride=4,
    ),
]
