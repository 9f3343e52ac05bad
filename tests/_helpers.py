"""Small helpers shared by the test files."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from torch import nn

import scaleeq
from scaleeq import NeuralKrigingUpsampler
from scaleeq.models import EDSR, EQSR


def perturbed(module: nn.Module, std: float = 0.05, seed: int = 0) -> nn.Module:
    """``module`` with ``std``-scaled Gaussian noise added to every parameter (seeded, in each
    parameter's dtype), so that zero- or identity-initialised parts matter. The module's
    train / eval mode is left as it is."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


# -- property-based fuzzing of the public API (issue 12) -----------------------------------------
# For random good and bad values of every scale / size / window argument, input tensor shape and
# dtype, and constructor argument, a call either raises ``ValueError`` / ``TypeError`` whose
# message names the argument, or returns a finite output of the documented size. Any other
# exception (IndexError, RuntimeError from deep inside torch, ZeroDivisionError, ...), a silent
# NaN, a wrong size or a slow example fails.
#
# Tiny modules and inputs (6x5 maps, width 8) keep the tests to seconds; examples are drawn from
# a fixed seed (``derandomize``) so CI is reproducible. Hypothesis derives that seed from the
# test's source text: the tests, which tests/test_fuzz.py held before they went to the files of
# their subjects, keep their text, decorators and the names they call (``_expected_hw``, ...).

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=3),
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
FEW = settings(FUZZ, max_examples=40)

#: The fuzz tests' warning filter: constructors may be given an even kernel with padding="same".
IGNORE_EVEN_SAME_PADDING = pytest.mark.filterwarnings(
    "ignore:Using padding=.same. with even kernel"
)

#: Numbers as users pass them, good and bad: any float (nan, inf, negative, subnormal, 1e300),
#: ints, bools, numeric strings, None.
ANY_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 40),
    st.sampled_from([0, -1, 1e-9, 1e-300, 1e4, 1e9, 1e39, True, False, "2", None, [], 2j]),
)
GOOD_SCALE = st.floats(0.25, 6.0)
SCALE_NUMBER = st.one_of(GOOD_SCALE, GOOD_SCALE, ANY_NUMBER)  # mostly valid, often not


@st.composite
def scale_args(draw, batch: int = 1):
    """A ``scale=`` argument: a number, a pair, a list of another length, or a tensor of any
    shape and dtype (per-sample scales)."""
    kind = draw(st.sampled_from(["number", "number", "pair", "list", "tensor"]))
    if kind == "number":
        return draw(SCALE_NUMBER)
    if kind == "pair":
        return (draw(SCALE_NUMBER), draw(SCALE_NUMBER))
    if kind == "list":
        return [draw(GOOD_SCALE) for _ in range(draw(st.sampled_from([0, 1, 3])))]
    shape = draw(st.sampled_from([(), (batch,), (batch, 2), (batch + 1,), (batch, 3), (0,)]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool]))
    values = draw(st.lists(SCALE_NUMBER.filter(lambda v: isinstance(v, float)), min_size=6))
    flat = torch.tensor(values[: max(1, math.prod(shape))], dtype=torch.float64)
    t = flat[: math.prod(shape)].reshape(shape) if math.prod(shape) else flat[:0].reshape(shape)
    return t.to(dtype) if dtype != torch.bool else t > 1


SIZE_ARG = st.one_of(
    st.none(),
    st.tuples(st.integers(-2, 30), st.integers(-2, 30)),
    st.sampled_from([(12, 10), (10**6, 10**6), (3,), "12x10", (2.5, 3), (True, 4), 7]),
)
WINDOW_ARG = st.one_of(
    st.none(),
    st.tuples(st.integers(-3, 30), st.integers(-3, 30), st.integers(-1, 12), st.integers(-1, 12)),
    st.sampled_from([(0, 0, 4), (0, 0, 4.5, 4), "all", (torch.tensor([0]), 0, 4, 4)]),
)

#: Words that name each argument in messages (the size guard names the requested size).
SCALE_WORDS = ("scale", "size", "window", "exceeds the limit", "empty output", "r_h", "r_w")

#: Constructor arguments: mostly valid (so the outputs get checked too), often not.
INT_ARG = st.one_of(
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(-2, 9),
    st.sampled_from([2.0, "3", None, True, float("nan")]),
)
FLOAT_ARG = st.one_of(
    st.floats(0.1, 4.0),
    st.floats(0.1, 4.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, "1", None, True]),
)


def named_or_finite(call, words, check_output=None):
    """Run ``call``: a ``ValueError`` / ``TypeError`` must name one of ``words``; any other
    exception propagates (and fails the test); an output must be finite and pass
    ``check_output``."""
    try:
        out = call()
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert any(w in msg for w in words), f"{type(e).__name__} names none of {words}: {msg}"
        return None
    assert isinstance(out, torch.Tensor)
    assert bool(torch.isfinite(out).all()), "non-finite output"
    if check_output is not None:
        check_output(out)
    return out


def _rule(n: int, r: float) -> set[int]:
    """Output lengths the output-size rule (round(n * r), halves up) may give for ``n * r``
    computed in floating point: the nearest integer (both neighbours at an exact half)."""
    x = n * r
    return {math.floor(x + 0.5), math.ceil(x - 0.5)}


def _uniform(scale) -> tuple[float, float] | None:
    """``(r_h, r_w)`` of a valid number or pair scale, else None (tensors, bad values)."""
    if isinstance(scale, tuple) and len(scale) == 2:
        pair = scale
    elif isinstance(scale, int | float) and not isinstance(scale, bool):
        pair = (scale, scale)
    else:
        return None
    return tuple(float(v) for v in pair) if all(isinstance(v, int | float) for v in pair) else None


def _expected_hw(scale, size, window, lr_hw):
    """The documented output size of a model call, or None where the fuzz does not predict it."""
    if isinstance(window, tuple) and len(window) == 4 and all(type(v) is int for v in window[2:]):
        return window[2], window[3]
    if size is not None and isinstance(size, tuple) and len(size) == 2:
        return size
    pair = _uniform(scale)
    if pair is None:
        return None
    return pair, lr_hw


def _check_hw(expected, out):
    if expected is None:
        return
    if isinstance(expected[0], tuple):  # from a scale: the rule, per axis
        (r_h, r_w), (h, w) = expected
        assert out.shape[-2] in _rule(h, r_h) and out.shape[-1] in _rule(w, r_w), out.shape
    else:
        assert tuple(out.shape[-2:]) == tuple(expected), (out.shape, expected)


# The fuzz tests' tiny modules; each test file builds them once (a module-scoped fixture), and
# no call changes them.


def fuzz_kriging_upsampler() -> NeuralKrigingUpsampler:
    torch.manual_seed(0)
    return NeuralKrigingUpsampler(4, hidden=8, blocks=1).eval()


def fuzz_retrofitted_edsr() -> nn.Module:
    torch.manual_seed(0)
    net = EDSR(num_feat=8, num_block=2, upscale=2)
    up = NeuralKrigingUpsampler(8, hidden=8, blocks=1)
    return scaleeq.retrofit(net, upsampler=up, afe_every=1).eval()


def fuzz_eqsr() -> nn.Module:
    torch.manual_seed(0)
    return EQSR.from_preset("tiny").eval()
