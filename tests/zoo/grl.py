"""GRL, tiny: its three SR tails (``pixelshuffle`` x2, ``pixelshuffledirect`` x3,
``nearest+conv`` x4). Window and stripe sizes are not in a GRL state dict: the cases use the
sizes spandrel assumes for each tail (window 32 and stripes 64 x 64 for SR, window 16 and
stripes 32 x 64 for ``nearest+conv``), so GRL pads the LR input to 64 x 64."""

from __future__ import annotations

from spandrel.architectures.GRL import GRL

from ._case import ZooCase


def _grl(upsampler: str, upscale: int) -> GRL:
    window, stripe = (16, [32, 64]) if upsampler == "nearest+conv" else (32, [64, 64])
    return GRL(
        img_size=64,
        embed_dim=16,
        upscale=upscale,
        upsampler=upsampler,
        depths=[1, 1],
        num_heads_window=[1, 1],
        num_heads_stripe=[1, 1],
        window_size=window,
        stripe_size=stripe,
        stripe_shift=True,
        mlp_ratio=2.0,
        anchor_window_down_factor=4,
    )


CASES = [
    ZooCase(
        "GRL-pixelshuffle-x2",
        "GRL",
        lambda: _grl("pixelshuffle", 2),
        cut="conv_before_upsample",
        layout="grl",
    ),
    ZooCase(
        "GRL-pixelshuffledirect-x3",
        "GRL",
        lambda: _grl("pixelshuffledirect", 3),
        cut="upsample",
        layout="grl",
    ),
    ZooCase(
        "GRL-nearest+conv-x4",
        "GRL",
        lambda: _grl("nearest+conv", 4),
        cut="conv_before_upsample",
        layout="grl",
    ),
]
