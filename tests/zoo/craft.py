"""CRAFT, tiny: its single tail (``upsample``: conv + pixel shuffle) at x4 with the ``1conv``
body end, and at x2 with the ``identity`` one. CRAFT pads every input to the next multiple of its
window (16: spandrel assumes it) strictly above the input size."""

from __future__ import annotations

from spandrel.architectures.CRAFT import CRAFT

from ._case import ZooCase


def _craft(upscale: int, resi: str = "1conv") -> CRAFT:
    return CRAFT(
        window_size=16,
        embed_dim=32,
        depths=[1, 1],
        num_heads=[2, 2],
        split_size_0=2,
        split_size_1=4,
        mlp_ratio=2.0,
        upscale=upscale,
        resi_connection=resi,
    )


CASES = [
    ZooCase("CRAFT-x4", "CRAFT", lambda: _craft(4), cut="upsample", layout="craft"),
    ZooCase(
        "CRAFT-x2-identity", "CRAFT", lambda: _craft(2, "identity"), cut="upsample", layout="craft"
    ),
]
