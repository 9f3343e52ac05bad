"""ATD, tiny: its three SR tails (``pixelshuffle`` x2, ``pixelshuffledirect`` x3,
``nearest+conv`` x4) and a model without input normalisation (``norm=False``). ATD pads its input
to a multiple of the window (4 here): the LR size is odd and non-square."""

from __future__ import annotations

from spandrel.architectures.ATD import ATD

from ._case import ZooCase


def _atd(upsampler: str, upscale: int, norm: bool = True) -> ATD:
    # category_size 256: what spandrel assumes for a model that is not ATD-light
    return ATD(
        embed_dim=16,
        depths=(2, 2),
        num_heads=(2, 2),
        window_size=4,
        category_size=256,
        num_tokens=8,
        reducted_dim=4,
        convffn_kernel_size=3,
        mlp_ratio=2.0,
        upscale=upscale,
        upsampler=upsampler,
        norm=norm,
    )


CASES = [
    ZooCase(
        "ATD-pixelshuffle-x2",
        "ATD",
        lambda: _atd("pixelshuffle", 2),
        cut="conv_before_upsample",
        layout="atd",
    ),
    ZooCase(
        "ATD-pixelshuffledirect-x3",
        "ATD",
        lambda: _atd("pixelshuffledirect", 3),
        cut="upsample",
        layout="atd",
    ),
    ZooCase(
        "ATD-nearest+conv-x4",
        "ATD",
        lambda: _atd("nearest+conv", 4),
        cut="conv_before_upsample",
        layout="atd",
    ),
    ZooCase(
        "ATD-pixelshuffle-x2-no-norm",
        "ATD",
        lambda: _atd("pixelshuffle", 2, norm=False),
        cut="conv_before_upsample",
        layout="atd",
    ),
]
