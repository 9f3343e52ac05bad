"""SwinIR (its three tails and the pixel-unshuffle front), Swin2SR, HAT and DRCT, tiny."""

from __future__ import annotations

from spandrel.architectures.DRCT import DRCT
from spandrel.architectures.HAT import HAT
from spandrel.architectures.Swin2SR import Swin2SR
from spandrel.architectures.SwinIR import SwinIR

from ._case import ZooCase

# torch.export with a dynamic batch fails inside the architectures' own attention code
# ("Constraints violated (L['lr'].size()[0]) ... specialized it to be a constant"); a fixed-tile
# export is the documented way round it (docs/retrofit.md), not implemented yet.
_TOKENS = {"embed_dim": 12, "depths": (2, 2), "num_heads": (2, 2), "window_size": 4}


def _swinir(upsampler: str, upscale: int, **kw) -> SwinIR:
    return SwinIR(upscale=upscale, upsampler=upsampler, mlp_ratio=2.0, img_size=16, **_TOKENS, **kw)


CASES = [
    ZooCase(
        "SwinIR-pixelshuffle-x2",
        "SwinIR",
        lambda: _swinir("pixelshuffle", 2),
        cut="conv_before_upsample",
        layout="swin",
    ),
    ZooCase(
        "SwinIR-pixelshuffledirect-x3",
        "SwinIR",
        lambda: _swinir("pixelshuffledirect", 3),
        cut="upsample",
        layout="swin",
    ),
    ZooCase(
        "SwinIR-nearest+conv-x4",
        "SwinIR",
        lambda: _swinir("nearest+conv", 4),
        cut="conv_before_upsample",
        layout="swin",
    ),
    ZooCase(
        "Swin2SR-pixelshuffle-x2",
        "Swin2SR",
        lambda: Swin2SR(upscale=2, upsampler="pixelshuffle", mlp_ratio=2.0, img_size=16, **_TOKENS),
        cut="conv_before_upsample",
        layout="swin",
    ),
    ZooCase(
        "HAT-x2",
        "HAT",
        lambda: HAT(
            upscale=2,
            img_size=16,
            compress_ratio=3,
            squeeze_factor=3,
            mlp_ratio=2.0,
            num_feat=16,
            **{**_TOKENS, "embed_dim": 12},
        ),
        cut="conv_before_upsample",
        layout="swin",
    ),
    ZooCase(
        "DRCT-x2",
        "DRCT",
        lambda: DRCT(
            upscale=2, upsampler="pixelshuffle", img_size=16, gc=8, mlp_ratio=2.0, **_TOKENS
        ),
        cut="conv_before_upsample",
        layout="swin",
        lr=(12, 8),
    ),  # DRCT does not pad
]
