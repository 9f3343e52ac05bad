"""RGT, tiny: its single tail (``pixelshuffle``) at x2 and x3 with the ``3conv`` residual
connection. RG-SA shrinks the map by 4 twice in eval mode: the LR size is at least 16."""

from __future__ import annotations

from spandrel.architectures.RGT import RGT

from ._case import ZooCase


def _rgt(upscale: int, resi: str = "1conv") -> RGT:
    return RGT(
        embed_dim=32,
        depth=[2, 2],
        num_heads=[2, 2],
        mlp_ratio=2.0,
        split_size=[4, 4],
        upscale=upscale,
        resi_connection=resi,
    )


CASES = [
    ZooCase(
        "RGT-x2", "RGT", lambda: _rgt(2), cut="conv_before_upsample", layout="rgt", lr=(17, 19)
    ),
    ZooCase(
        "RGT-x3-3conv",
        "RGT",
        lambda: _rgt(3, "3conv"),
        cut="conv_before_upsample",
        layout="rgt",
        lr=(19, 17),
    ),
]
