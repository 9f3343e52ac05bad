"""spandrel's FDAT, tiny (window 4): each upsampler type but dysample, and the x2
pixel-unshuffle front (features at h/2).

Not covered: ``upsampler_type="dysample"``: spandrel's FDAT DySample builds a tensor with
``pin_memory=True`` in its forward, which fails without a CUDA device, so the network's own
forward (the reference of the cut) cannot run on CPU. Its cut and body are those of the other
types. ``"conv"`` is the x1 (restoration) tail.
"""

from __future__ import annotations

from spandrel.architectures.FDAT import FDAT

from ._case import ZooCase


def _fdat(upsampler: str, scale: int, unshuffle: bool = False) -> FDAT:
    # mid_dim = embed_dim: pa_up stores mid_dim as its in_dim, which spandrel reads back
    return FDAT(
        embed_dim=16,
        num_groups=2,
        depth_per_group=1,
        num_heads=2,
        window_size=4,
        ffn_expansion_ratio=2.0,
        aim_reduction_ratio=4,
        mid_dim=16,
        upsampler_type=upsampler,
        scale=scale,
        unshuffle_mod=unshuffle,
    )


def _case(upsampler: str, scale: int, **kw) -> ZooCase:
    return ZooCase(
        f"FDAT-{upsampler}-x{scale}",
        "FDAT",
        lambda: _fdat(upsampler, scale),
        cut="upsampler",
        layout="fdat",
        **kw,
    )


CASES = [
    _case("pixelshuffledirect", 3),
    _case("pixelshuffle", 2),
    _case("nearest+conv", 4),
    _case("transpose+conv", 3),
    _case("lda", 2),
    _case("pa_up", 2),
    ZooCase(
        "FDAT-x2-unshuffle",
        "FDAT",
        lambda: _fdat("pixelshuffledirect", 2, True),
        cut="upsampler",
        layout="fdat",
        stride=2,
    ),
]
