"""spandrel's MoESR, tiny: each upsampler type (``"conv"`` is the x1 restoration tail)."""

from __future__ import annotations

from spandrel.architectures.MoESR import MoESR

from ._case import ZooCase


def _moesr(upsampler: str, scale: int) -> MoESR:
    # expansion ratios whose hidden widths spandrel reads back exactly at dim 16
    return MoESR(
        dim=16,
        n_blocks=2,
        n_block=1,
        expansion_factor=2.0,
        expansion_msg=1.5,
        upsampler=upsampler,
        scale=scale,
        upsample_dim=16,
    )


def _case(upsampler: str, scale: int) -> ZooCase:
    # an odd LR size: the network reflect-pads to a multiple of 2
    return ZooCase(
        f"MoESR-{upsampler}-x{scale}",
        "MoESR",
        lambda: _moesr(upsampler, scale),
        cut="upscale",
        layout="moesr",
    )


CASES = [
    _case("pixelshuffledirect", 4),
    _case("pixelshuffle", 2),
    _case("nearest+conv", 3),
    _case("dysample", 2),
]
