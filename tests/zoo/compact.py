"""spandrel's Compact (SRVGGNetCompact, PReLU as spandrel detects it), tiny: x4 and x2; both add
the nearest-upsampled input after the tail (``residual="nearest"``)."""

from __future__ import annotations

from spandrel.architectures.Compact import Compact

from ._case import ZooCase


def _compact(scale: int) -> Compact:
    return Compact(
        num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=scale, act_type="prelu"
    )


CASES = [
    ZooCase(
        "Compact-x4",
        "Compact",
        lambda: _compact(4),
        cut="body.10",
        layout="compact",
        residual="nearest",
    ),
    ZooCase(
        "Compact-x2",
        "Compact",
        lambda: _compact(2),
        cut="body.10",
        layout="compact",
        residual="nearest",
    ),
]
