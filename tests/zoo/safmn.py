"""spandrel's SAFMN, tiny: x4 and x2 (the only tail: conv + pixel shuffle)."""

from __future__ import annotations

from spandrel.architectures.SAFMN import SAFMN

from ._case import ZooCase

# spandrel declares a multiple of 8 (SAFM pools to h / 8); the LR sizes follow it.
_ONNX = (
    "spandrel's SAFM pools with F.adaptive_max_pool2d(x, (h // 2**i, w // 2**i)) and "
    "upsamples back with F.interpolate(size=(h, w)); ONNX has no adaptive pooling, and the "
    "exported graph keeps the traced sizes (onnxruntime: Concat dimensions 8 and 48 at another "
    "size): a fixed-LR-tile export would cover it and is not implemented"
)
CASES = [
    ZooCase(
        "SAFMN-x4",
        "SAFMN",
        lambda: SAFMN(dim=16, n_blocks=2, upscaling_factor=4),
        cut="to_img",
        layout="safmn",
        lr=(16, 8),
        onnx=_ONNX,
    ),
    ZooCase(
        "SAFMN-x2",
        "SAFMN",
        lambda: SAFMN(dim=16, n_blocks=4, upscaling_factor=2),
        cut="to_img",
        layout="safmn",
        lr=(8, 16),
        onnx=_ONNX,
    ),
]
