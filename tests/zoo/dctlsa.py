"""spandrel's DCTLSA, tiny (its six groups, five heads and window 16 are fixed): x4 and x2."""

from __future__ import annotations

from spandrel.architectures.DCTLSA import DCTLSA

from ._case import ZooCase

# nf must be a multiple of the 5 heads; the LR size is below the window (the groups pad);
# export traces across 2 x 2 windows (DCTLSAAdapter.export_trace_size).
CASES = [
    ZooCase(
        "DCTLSA-x4",
        "DCTLSA",
        lambda: DCTLSA(nf=10, num_modules=6, upscale=4),
        cut="upsampler",
        layout="dctlsa",
    ),
    ZooCase(
        "DCTLSA-x2",
        "DCTLSA",
        lambda: DCTLSA(nf=10, num_modules=6, upscale=2),
        cut="upsampler",
        layout="dctlsa",
        lr=(16, 13),
    ),
]
