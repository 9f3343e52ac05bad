"""spandrel's Swift-SRGAN generator, tiny: x4 (two upsample blocks) and x2 (one)."""

from __future__ import annotations

from spandrel.architectures.SwiftSRGAN import SwiftSRGAN

from ._case import ZooCase


def _swift(scale: int) -> SwiftSRGAN:
    return SwiftSRGAN(in_channels=3, num_channels=8, num_blocks=2, upscale_factor=scale)


CASES = [
    ZooCase("SwiftSRGAN-x4", "SwiftSRGAN", lambda: _swift(4), cut="upsampler", layout="swiftsrgan"),
    ZooCase("SwiftSRGAN-x2", "SwiftSRGAN", lambda: _swift(2), cut="upsampler", layout="swiftsrgan"),
]
