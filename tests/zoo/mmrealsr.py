"""spandrel's MM-RealSR, tiny: x4 only (spandrel's forward fails for its x2 / x1 variants:
``de_net`` is built for the pixel-unshuffled channels but fed the raw image).

The cut (``conv_first(x) + conv_body(trunk)``) is the input of a functional
``F.interpolate``; ``conv_up1``, the first tail *module*, receives its nearest x2 upsampling,
so the reference is ``conv_up1``'s input at every second pixel (``[..., ::2, ::2]``). The
network's forward returns ``(image, degrees)``.
"""

from __future__ import annotations

from spandrel.architectures.MMRealSR import MMRealSR

from ._case import ZooCase


def _mmrealsr() -> MMRealSR:
    return MMRealSR(
        num_in_ch=3,
        num_out_ch=3,
        scale=4,
        num_feat=8,
        num_block=2,
        num_grow_ch=4,
        num_feats=[8, 16],
        num_blocks=[1, 1],
        downscales=[2, 1],
    )


CASES = [
    ZooCase(
        "MMRealSR-x4",
        "MMRealSR",
        _mmrealsr,
        cut="conv_up1",
        layout="mmrealsr",
        cut_map=lambda ref, size: ref[:, :, ::2, ::2],
    )  # conv_up1 reads a nearest x2,
]
