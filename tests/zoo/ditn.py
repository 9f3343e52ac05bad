"""spandrel's DITN, tiny (its patch size is fixed at 8): x4 with one UFONE group, x2 with two."""

from __future__ import annotations

from spandrel.architectures.DITN import DITN

from ._case import ZooCase


def _ditn(upscale: int, groups: int) -> DITN:
    return DITN(dim=12, ITL_blocks=1, SAL_blocks=1, UFONE_blocks=groups, upscale=upscale)


# LR sizes that are not multiples of 8: the network reflect-pads them.
CASES = [
    ZooCase("DITN-x4", "DITN", lambda: _ditn(4, 1), cut="upsample", layout="ditn"),
    ZooCase("DITN-x2", "DITN", lambda: _ditn(2, 2), cut="upsample", layout="ditn", lr=(13, 10)),
]
