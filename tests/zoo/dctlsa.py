"""spandrel's DCTLSA, tiny (its six groups, five heads and window 16 are fixed): x4 and x2."""

from __future__ import annotations

from spandrel.architectures.DCTLSA import DCTLSA

from ._case import ZooCase

# nf must be a multiple of the 5 heads; the LR size is below the window (the groups pad).
_ONNX = (
    "the exported graph keeps the traced number of 16-pixel windows: traced within one window, "
    "a larger input fails in onnxruntime (Reshape {1,2,2,16,16,30} to {1,256,3,5,2} at 19x18); "
    "open: trace across several windows or declare the window count fixed"
)
CASES = [
    ZooCase(
        "DCTLSA-x4",
        "DCTLSA",
        lambda: DCTLSA(nf=10, num_modules=6, upscale=4),
        cut="upsampler",
        layout="dctlsa",
        onnx=_ONNX,
    ),
    ZooCase(
        "DCTLSA-x2",
        "DCTLSA",
        lambda: DCTLSA(nf=10, num_modules=6, upscale=2),
        cut="upsampler",
        layout="dctlsa",
        lr=(16, 13),
        onnx=_ONNX,
    ),
]
