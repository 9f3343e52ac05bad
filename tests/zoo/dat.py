"""DAT, tiny: its two tails (``pixelshuffle`` x2, ``pixelshuffledirect`` x3) and the ``3conv``
residual connection (x4)."""

from __future__ import annotations

from spandrel.architectures.DAT import DAT

from ._case import ZooCase


def _dat(upsampler: str, upscale: int, resi: str = "1conv") -> DAT:
    # img_size 64: what spandrel assumes when a depth-2 group stores no mask to read it from
    return DAT(
        img_size=64,
        embed_dim=32,
        split_size=[2, 4],
        depth=[2, 2],
        num_heads=[2, 2],
        expansion_factor=2.0,
        upscale=upscale,
        upsampler=upsampler,
        resi_connection=resi,
    )


CASES = [
    ZooCase(
        "DAT-pixelshuffle-x2",
        "DAT",
        lambda: _dat("pixelshuffle", 2),
        cut="conv_before_upsample",
        layout="dat",
    ),
    ZooCase(
        "DAT-pixelshuffledirect-x3",
        "DAT",
        lambda: _dat("pixelshuffledirect", 3),
        cut="upsample",
        layout="dat",
    ),
    ZooCase(
        "DAT-pixelshuffle-x4-3conv",
        "DAT",
        lambda: _dat("pixelshuffle", 4, "3conv"),
        cut="conv_before_upsample",
        layout="dat",
    ),
]
