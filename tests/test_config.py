"""Constructor arguments recorded once (scaleeq._config.store_config): what ``config`` holds is
written into saved files, so its content is part of the file format."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scaleeq import NeuralKrigingUpsampler
from scaleeq._config import store_config
from scaleeq.layers.baselines import BicubicFeatureUpsampler, LIIFUpsampler
from scaleeq.models import EDSR, EQSR, RCAN, SwinIR


class Head(nn.Module):
    @store_config
    def __init__(self, width: int, sizes=(1, 2), *, depth: int = 2) -> None:
        super().__init__()
        if width < 1:
            raise ValueError("width must be >= 1")


class WideHead(Head):
    @store_config
    def __init__(self, width: int, *, extra: float = 0.5) -> None:
        super().__init__(width, depth=3)


def test_every_parameter_by_name_with_defaults_and_sequences_as_tuples():
    assert Head(4, [3, 5]).config == {"width": 4, "sizes": (3, 5), "depth": 2}
    assert list(Head(4, depth=7).config) == ["width", "sizes", "depth"]  # signature order


def test_a_decorated_subclass_records_its_own_arguments():
    assert WideHead(6).config == {"width": 6, "extra": 0.5}


def test_a_failed_constructor_records_nothing():
    with pytest.raises(ValueError, match="width"):
        Head(0)


def test_variadic_parameters_are_refused_at_decoration():
    with pytest.raises(TypeError, match=r"variadic parameters \['kwargs'\]"):

        class Loose(nn.Module):
            @store_config
            def __init__(self, width: int, **kwargs) -> None:
                super().__init__()


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: EDSR.from_preset("tiny", upscale=2),
            {
                "num_in_ch": 3,
                "num_out_ch": 3,
                "num_feat": 16,
                "num_block": 2,
                "upscale": 2,
                "res_scale": 1.0,
                "img_range": 255.0,
                "rgb_mean": (0.4488, 0.4371, 0.4040),
            },
        ),
        (
            lambda: RCAN(
                num_feat=8,
                num_group=1,
                num_block=1,
                reduction=4,
                upscale=2,
                rgb_mean=[0.5, 0.5, 0.5],
            ),
            {
                "num_in_ch": 3,
                "num_out_ch": 3,
                "num_feat": 8,
                "num_group": 1,
                "num_block": 1,
                "reduction": 4,
                "upscale": 2,
                "res_scale": 1.0,
                "img_range": 255.0,
                "rgb_mean": (0.5, 0.5, 0.5),
            },
        ),
        (
            lambda: BicubicFeatureUpsampler(4, hidden=8, layers=1),
            {"in_channels": 4, "out_channels": 3, "hidden": 8, "layers": 1},
        ),
        (
            lambda: LIIFUpsampler(4, hidden=8, layers=2, chunk=100),
            {"in_channels": 4, "out_channels": 3, "hidden": 8, "layers": 2, "chunk": 100},
        ),
    ],
    ids=["edsr", "rcan", "bicubic", "liif"],
)
def test_models_record_what_they_recorded_before(build, expected):
    """The exact dicts the hand-written records held (keys, values, tuples)."""
    assert build().config == expected


@pytest.mark.parametrize(
    "build",
    [
        lambda: SwinIR.from_preset("tiny", upscale=2, depths=[2, 2]),
        lambda: EQSR.from_preset("tiny"),
        lambda: NeuralKrigingUpsampler(8, hidden=16, blocks=1, lengthscale=2.0),
    ],
    ids=["swinir", "eqsr", "nk"],
)
def test_config_rebuilds_an_equal_module(build):
    torch.manual_seed(0)
    a = build()
    torch.manual_seed(0)
    b = type(a)(**a.config)
    assert b.config == a.config
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(isinstance(v, tuple) for v in a.config.values() if isinstance(v, list | tuple))
