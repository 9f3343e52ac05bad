"""Parse once, trust inside (issue 23): one forward of a model parses its scale argument once,
encodes it once for all its AFE layers, and checks its input tensors at the boundary only.

Counted with wrappers around the package's own functions, installed wherever a module of
the package holds a reference to them.
"""

from __future__ import annotations

import collections
import importlib
import pkgutil

import pytest
import torch

import scaleeq
import scaleeq._checks
import scaleeq.scale
from scaleeq.layers import AdaptiveConv2d
from scaleeq.models import EDSR, EQSR
from scaleeq.models.eqsr import OfficialCellEncoding

_SKIP = ("__main__", "triton", "serve", "spandrel", "_torchvision")


@pytest.fixture
def counts(monkeypatch):
    """A counter of parses (``parse_scale``, and ``uniform_factors`` when it reads a number or
    a pair), encodings (``ScaleEncoder.encode``) and ``check_tensor`` calls."""
    seen: collections.Counter[str] = collections.Counter()
    modules = [
        importlib.import_module(m.name)
        for m in pkgutil.walk_packages(scaleeq.__path__, "scaleeq.")
        if not any(s in m.name for s in _SKIP)
    ]

    def patch(owner, name, wrapper):
        original = getattr(owner, name)
        wrapped = wrapper(original)
        for mod in modules:
            if getattr(mod, name, None) is original:
                monkeypatch.setattr(mod, name, wrapped)

    def counting(key):
        def wrapper(original):
            def f(*args, **kwargs):
                seen[key] += 1
                return original(*args, **kwargs)

            return f

        return wrapper

    def counting_uniform(original):
        def f(*args, **kwargs):
            out = original(*args, **kwargs)
            seen["parse"] += out is not None
            return out

        return f

    patch(scaleeq.scale, "parse_scale", counting("parse"))
    patch(scaleeq.scale, "uniform_factors", counting_uniform)
    patch(scaleeq._checks, "check_tensor", counting("check_tensor"))
    for cls in (scaleeq.ScaleEncoding, OfficialCellEncoding):
        monkeypatch.setattr(cls, "encode", counting("encode")(cls.encode))
    return seen


SCALES = [
    pytest.param(3.7, None, id="float"),
    pytest.param((2.0, 3.5), None, id="pair"),
    pytest.param(torch.tensor([2.0, 3.0]), (0, 0, 8, 8), id="per-sample+window"),
]


@pytest.mark.parametrize(("scale", "window"), SCALES)
def test_retrofitted_edsr_forward_parses_and_encodes_once(counts, scale, window):
    asr = scaleeq.retrofit(EDSR.from_preset("tiny", upscale=2), afe_every=1).eval()
    n_layers = sum(isinstance(m, AdaptiveConv2d) for m in asr.modules())
    assert n_layers >= 2  # so that "once" means something
    lr = torch.rand(2, 3, 10, 12)
    counts.clear()  # retrofit itself ran the network
    with torch.no_grad():
        asr(lr, scale=scale, window=window)
    assert counts["parse"] == 1
    assert counts["encode"] == 1
    assert counts["check_tensor"] == 2  # lr at the model, feat at the upsampler's forward


@pytest.mark.parametrize("official", [False, True], ids=["eqsr", "official"])
@pytest.mark.parametrize("scale", [2.5, (3.0, 2.0)], ids=["float", "pair"])
def test_eqsr_forward_parses_and_encodes_once(counts, official, scale):
    net = EQSR.from_preset("tiny", official=official).eval()
    assert sum(isinstance(m, AdaptiveConv2d) for m in net.modules()) >= 2
    counts.clear()
    with torch.no_grad():
        net(torch.rand(1, 3, 9, 10), scale=scale)
    assert counts["parse"] == 1
    assert counts["encode"] == 1
    assert counts["check_tensor"] == 2


def test_a_training_step_encodes_once_per_forward(counts):
    asr = scaleeq.retrofit(EDSR.from_preset("tiny", upscale=2), afe_every=1)
    asr.set_grad_checkpointing(False)
    lr = torch.rand(2, 3, 10, 12)
    counts.clear()
    out = asr(lr, scale=torch.tensor([2.0, 3.3]), window=(0, 0, 12, 12))
    out.mean().backward()
    assert counts["encode"] == 1 and counts["parse"] == 1


def test_layers_called_directly_still_parse_and_check(counts):
    """The drop-in layers are public boundaries: each direct call checks and parses."""
    conv = AdaptiveConv2d(4, 4, 3)
    x = torch.rand(2, 4, 6, 6)
    counts.clear()
    conv(x, 2.5)
    conv(x, torch.tensor([2.0, 3.0]))
    assert counts["parse"] == 2 and counts["encode"] == 2 and counts["check_tensor"] == 2
    with pytest.raises(ValueError, match="scale holds 3 per-sample scales"):
        conv(x, torch.tensor([2.0, 3.0, 4.0]))


def test_a_shared_condition_encodes_once_per_encoding_setting():
    """Layers with equal encodings share one encoding of a call's condition; another
    setting (num_freqs) gets its own."""
    from scaleeq.scale import ScaleCondition

    cond = ScaleCondition(torch.tensor([[2.0, 3.0]], dtype=torch.float64))
    a, b, c = AdaptiveConv2d(4, 4, 3), AdaptiveConv2d(4, 4, 3), AdaptiveConv2d(4, 4, 3, num_freqs=4)
    x = torch.rand(1, 4, 5, 5)
    ya, yb, yc = a(x, cond), b(x, cond), c(x, cond)
    assert len(cond._encodings) == 2
    assert torch.equal(ya, a(x, (2.0, 3.0)))  # the same as the public path
    assert torch.equal(yc, c(x, (2.0, 3.0)))
    assert torch.equal(yb, b(x, (2.0, 3.0)))
