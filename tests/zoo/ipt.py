"""IPT, tiny, single-task SR models (IPT's body only takes ``patch_size`` x ``patch_size``
inputs: 8 here, so the LR is 8 x 8): the 2^n upsampler (x2), the x3 one, and a body without
the MLP / query embeddings (x4). ``rgb_range=1``: the harness feeds [0, 1] images to the model's
own forward (the adapter scales by ``rgb_range`` for 255-range models, as spandrel's call does).
spandrel assumes 12 heads."""

from __future__ import annotations

from spandrel.architectures.IPT import IPT

from ._case import ZooCase


def _ipt(scale: int, mlp: bool = True) -> IPT:
    return IPT(
        patch_size=8,
        patch_dim=2,
        n_feats=12,
        rgb_range=1,
        scale=[scale],
        num_heads=12,
        num_layers=1,
        num_queries=1,
        mlp=mlp,
    )


CASES = [
    ZooCase(
        "IPT-x2",
        "IPT",
        lambda: _ipt(2),
        cut="tail.0",
        layout="ipt",
        lr=(8, 8),
    ),
    ZooCase(
        "IPT-x3",
        "IPT",
        lambda: _ipt(3),
        cut="tail.0",
        layout="ipt",
        lr=(8, 8),
    ),
    ZooCase(
        "IPT-x4-no-mlp",
        "IPT",
        lambda: _ipt(4, mlp=False),
        cut="tail.0",
        layout="ipt",
        lr=(8, 8),
    ),
]
