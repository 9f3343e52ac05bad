"""spandrel's SAFMN, tiny: x4 and x2 (the only tail: conv + pixel shuffle)."""

from __future__ import annotations

from spandrel.architectures.SAFMN import SAFMN

from ._case import ZooCase

# spandrel declares a multiple of 8 (SAFM pools to h / 8); the LR sizes follow it.
CASES = [
    ZooCase(
        "SAFMN-x4",
        "SAFMN",
        lambda: SAFMN(dim=16, n_blocks=2, upscaling_factor=4),
        cut="to_img",
        layout="safmn",
        lr=(16, 8),
    ),
    ZooCase(
        "SAFMN-x2",
        "SAFMN",
        lambda: SAFMN(dim=16, n_blocks=4, upscaling_factor=2),
        cut="to_img",
        layout="safmn",
        lr=(8, 16),
    ),
]
