"""spandrel's SeemoRe, tiny: x4 (linear expert widths) and x2 (exponential widths)."""

from __future__ import annotations

from spandrel.architectures.SeemoRe import SeemoRe

from ._case import ZooCase


def _seemore(scale: int, lr_space: str) -> SeemoRe:
    # use_shuffle / recursive / topk cannot be read from a state dict: spandrel's defaults
    return SeemoRe(
        scale=scale,
        num_experts=3,
        num_layers=2,
        embedding_dim=16,
        global_kernel_size=5,
        lr_space=lr_space,
        use_shuffle=True,
        recursive=2,
        topk=1,
    )


# The calibration pools twice by 4: the LR size is at least 16.
CASES = [
    ZooCase(
        "SeemoRe-x4",
        "SeemoRe",
        lambda: _seemore(4, "linear"),
        cut="upsampler",
        layout="seemore",
        lr=(17, 16),
    ),
    ZooCase(
        "SeemoRe-x2-exp",
        "SeemoRe",
        lambda: _seemore(2, "exp"),
        cut="upsampler",
        layout="seemore",
        lr=(16, 19),
    ),
]
