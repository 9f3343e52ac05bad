"""spandrel's Real-CUGAN (fixed widths: it has no size hyperparameters): x2, x3, x4, each also
``pro``, and the x2 ``fast`` variant (pixel-unshuffle front, multiples of 4 only).

The x2 / x3 / x4 cut is the input of ``unet1.conv_bottom`` and the fast one that of
``conv_final``; both maps carry a reflect-padded border on *every* side (11 / 7 / 12 / 2
pixels), so the reference must be cropped by it (see the adapter module's docstring).
"""

from __future__ import annotations

from spandrel.architectures.RealCUGAN import UpCunet2x, UpCunet2x_fast, UpCunet3x, UpCunet4x

from ._case import ZooCase

_LR = (21, 23)  # above every variant's reflect padding, odd: the networks pad to even sizes
_LR_FAST = (43, 47)  # the fast variant: padded size a multiple of 4, above its 38-pixel padding


def _border(b: int):
    """The cut map carries a reflect-padded border of ``b`` pixels on every side."""
    return lambda ref, size: ref[:, :, b : b + size[0], b : b + size[1]]


CASES = [
    ZooCase(
        "RealCUGAN-x2",
        "RealCUGAN",
        lambda: UpCunet2x(),
        cut="unet1.conv_bottom",
        layout="realcugan",
        lr=_LR,
        cut_map=_border(11),
    ),
    ZooCase(
        "RealCUGAN-x2-pro",
        "RealCUGAN",
        lambda: UpCunet2x(pro=True),
        cut="unet1.conv_bottom",
        layout="realcugan",
        lr=_LR,
        cut_map=_border(11),
    ),
    ZooCase(
        "RealCUGAN-x3",
        "RealCUGAN",
        lambda: UpCunet3x(),
        cut="unet1.conv_bottom",
        layout="realcugan",
        lr=_LR,
        cut_map=_border(7),
    ),
    ZooCase(
        "RealCUGAN-x3-pro",
        "RealCUGAN",
        lambda: UpCunet3x(pro=True),
        cut="unet1.conv_bottom",
        layout="realcugan",
        lr=_LR,
        cut_map=_border(7),
    ),
    ZooCase(
        "RealCUGAN-x4",
        "RealCUGAN",
        lambda: UpCunet4x(),
        cut="unet1.conv_bottom",
        layout="realcugan_4x",
        lr=_LR,
        residual="nearest",
        cut_map=_border(12),
    ),
    ZooCase(
        "RealCUGAN-x4-pro",
        "RealCUGAN",
        lambda: UpCunet4x(pro=True),
        cut="unet1.conv_bottom",
        layout="realcugan_4x",
        lr=_LR,
        residual="nearest",
        cut_map=_border(12),
    ),
    ZooCase(
        "RealCUGAN-x2-fast",
        "RealCUGAN",
        lambda: UpCunet2x_fast(),
        cut="conv_final",
        layout="realcugan_fast",
        lr=_LR_FAST,
        residual="nearest",
        cut_map=_border(2),
    ),
]
