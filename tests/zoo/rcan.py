"""spandrel's RCAN, tiny: x4, and x2 with its pixel-unshuffle front end (features at h/2)."""

from __future__ import annotations

from spandrel.architectures.RCAN import RCAN

from ._case import ZooCase


def _rcan(scale: int, unshuffle: bool = False) -> RCAN:
    return RCAN(
        scale=scale, n_resgroups=2, n_resblocks=1, n_feats=16, reduction=4, unshuffle_mod=unshuffle
    )


CASES = [
    ZooCase("RCAN-x4", "RCAN", lambda: _rcan(4), cut="tail", layout="rcan"),
    ZooCase(
        "RCAN-x2-unshuffle",
        "RCAN",
        lambda: _rcan(2, True),
        cut="tail",
        layout="rcan",
        stride=2,
    ),
]
