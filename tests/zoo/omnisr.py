"""spandrel's OmniSR, tiny (window 4): x4 with relative position bias, x2 without."""

from __future__ import annotations

from spandrel.architectures.OmniSR import OmniSR

from ._case import ZooCase


def _omnisr(up_scale: int, pe: bool) -> OmniSR:
    return OmniSR(num_feat=16, block_num=1, pe=pe, window_size=4, res_num=2, up_scale=up_scale)


# The LR size is not a multiple of the window (the network zero-pads) and, padded, at least
# 16 x 16: ESA's stride-2 conv and 7x7 max pool need it.
CASES = [
    ZooCase(
        "OmniSR-x4", "OmniSR", lambda: _omnisr(4, True), cut="up", layout="omnisr", lr=(17, 15)
    ),
    ZooCase(
        "OmniSR-x2-nope",
        "OmniSR",
        lambda: _omnisr(2, False),
        cut="up",
        layout="omnisr",
        lr=(17, 15),
    ),
]
