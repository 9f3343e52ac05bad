"""spandrel's PLKSR and RealPLKSR (both spandrel id ``PLKSR``), tiny: PLKSR x4 (PLK conv,
CCM) and x2 (rectangular sparse PLK, DCCM); RealPLKSR x4 (group norm) and x2 with DySample and
layer norm. Pixel-shuffle variants add the nearest-upsampled input (``residual="nearest"``)."""

from __future__ import annotations

from spandrel.architectures.PLKSR import PLKSR, RealPLKSR

from ._case import ZooCase


def _plksr(scale: int, **kw) -> PLKSR:
    return PLKSR(dim=16, n_blocks=2, upscaling_factor=scale, split_ratio=0.25, **kw)


def _real(scale: int, **kw) -> RealPLKSR:
    return RealPLKSR(
        dim=16, n_blocks=2, upscaling_factor=scale, kernel_size=7, split_ratio=0.25, **kw
    )


CASES = [
    ZooCase(
        "PLKSR-x4",
        "PLKSR",
        lambda: _plksr(4, kernel_size=7),
        cut="feats.3",
        layout="plksr",
        residual="nearest",
    ),
    ZooCase(
        "PLKSR-x2-rectsparse",
        "PLKSR",
        lambda: _plksr(2, kernel_size=9, lk_type="RectSparsePLK", ccm_type="DCCM"),
        cut="feats.3",
        layout="plksr",
        residual="nearest",
    ),
    ZooCase(
        "RealPLKSR-x4",
        "PLKSR",
        lambda: _real(4),
        cut="feats.3",
        layout="realplksr",
        residual="nearest",
    ),
    ZooCase(
        "RealPLKSR-x2-dysample",
        "PLKSR",
        lambda: _real(2, dysample=True, layer_norm=True),
        cut="feats.3",
        layout="realplksr_dysample",
    ),
]
