"""Property-based fuzzing of the public API (issue 12): for random good and bad values of every
scale / size / window argument, input tensor shape and dtype, and constructor argument, a call
either raises ``ValueError`` / ``TypeError`` whose message names the argument, or returns a
finite output of the documented size. Any other exception (IndexError, RuntimeError from deep
inside torch, ZeroDivisionError, ...), a silent NaN, a wrong size or a slow example fails.

Tiny modules and inputs (6x5 maps, width 8) keep the file to seconds; examples are drawn from a
fixed seed (``derandomize``) so CI is reproducible.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import scaleeq  # noqa: E402
from scaleeq import AdaptiveConv2d, AFEBlock, NeuralKrigingUpsampler  # noqa: E402
from scaleeq.geometry import render_plan  # noqa: E402
from scaleeq.models import EDSR, EQSR  # noqa: E402
from scaleeq.resize import imresize  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=3),
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
FEW = settings(FUZZ, max_examples=40)

# --- strategies ---------------------------------------------------------------------------------

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


# --- shared tiny modules (built once; calls never change them) ------------------------------


@pytest.fixture(scope="module")
def nk():
    torch.manual_seed(0)
    return NeuralKrigingUpsampler(4, hidden=8, blocks=1).eval()


@pytest.fixture(scope="module")
def asr():
    torch.manual_seed(0)
    net = EDSR(num_feat=8, num_block=2, upscale=2)
    up = NeuralKrigingUpsampler(8, hidden=8, blocks=1)
    return scaleeq.retrofit(net, upsampler=up, afe_every=1).eval()


@pytest.fixture(scope="module")
def eqsr():
    torch.manual_seed(0)
    return EQSR.from_preset("tiny").eval()


# --- scale / size / window arguments ------------------------------------------------------------


@FUZZ
@given(
    lr=st.tuples(st.integers(-1, 9), st.integers(-1, 9)),
    batch=st.integers(-1, 3),
    scale=scale_args(batch=2),
    size=SIZE_ARG,
    window=WINDOW_ARG,
    max_pixels=st.one_of(st.none(), st.sampled_from([100, 10**6])),
)
def test_render_plan(lr, batch, scale, size, window, max_pixels):
    if size is None and scale is None:
        scale = 2.0
    try:
        plan = render_plan(lr, batch, scale=scale, size=size, window=window, max_pixels=max_pixels)
    except (ValueError, TypeError) as e:
        words = (*SCALE_WORDS, "batch", "input", "plan", "max_pixels")
        assert any(w in str(e) for w in words), f"{type(e).__name__}: {e}"
        return
    assert plan.batch == batch >= 1 and min(lr) >= 1
    assert plan.sizes.shape == (batch, 2) and bool((plan.sizes >= 1).all())
    assert plan.batch * plan.height * plan.width <= (max_pixels or 2**28)
    expected = _expected_hw(scale, size, None, lr)
    if expected is not None and plan.out_size is not None:
        _check_hw(expected, torch.empty(0, 0, *plan.out_size))


@FUZZ
@given(
    shape=st.sampled_from([(3, 6, 5), (2, 1, 6, 5), (6, 5), (1, 3, 1, 1), (4,), (3, 0, 5)]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64]),
    scale=st.one_of(st.none(), SCALE_NUMBER, st.tuples(SCALE_NUMBER, SCALE_NUMBER)),
    size=st.one_of(st.none(), SIZE_ARG),
)
def test_imresize(shape, dtype, scale, size):
    x = torch.rand(shape).to(dtype)

    def check(out):
        assert out.dtype == x.dtype and out.shape[:-2] == x.shape[:-2]
        h, w = x.shape[-2:]
        if size is not None:
            assert tuple(out.shape[-2:]) == tuple(size)
        else:  # MATLAB's rule: ceil(n * s)
            r_h, r_w = _uniform(scale)
            for n, r, m in ((h, r_h, out.shape[-2]), (w, r_w, out.shape[-1])):
                assert n * r - 1e-6 <= m < n * r + 1 + 1e-6

    named_or_finite(
        lambda: imresize(x, scale=scale, size=size), (*SCALE_WORDS, "x ", "x must", "dtype"), check
    )


@FUZZ
@given(scale=scale_args(batch=2), size=SIZE_ARG, window=WINDOW_ARG)
def test_neural_kriging_scale_size_window(nk, scale, size, window):
    feat = torch.rand(2, 4, 6, 5)
    if scale is None and size is None:
        scale = 1.5
    expected = _expected_hw(scale, size, window, (6, 5))
    with torch.no_grad():
        named_or_finite(
            lambda: nk(feat, scale=scale, size=size, window=window),
            SCALE_WORDS,
            lambda out: (out.shape[:2] == (2, 3)) and _check_hw(expected, out),
        )


@FUZZ
@given(scale=scale_args(batch=1), size=SIZE_ARG, window=WINDOW_ARG)
def test_arbitrary_scale_sr_scale_size_window(asr, scale, size, window):
    lr = torch.rand(1, 3, 6, 5)
    if scale is None and size is None:
        scale = 2.5
    expected = _expected_hw(scale, size, window, (6, 5))
    with torch.no_grad():
        named_or_finite(
            lambda: asr(lr, scale=scale, size=size, window=window),
            SCALE_WORDS,
            lambda out: _check_hw(expected, out),
        )


@FEW
@given(scale=scale_args(batch=1), size=SIZE_ARG)
def test_eqsr_scale_and_size(eqsr, scale, size):
    lr = torch.rand(1, 3, 6, 5)
    if scale is None and size is None:
        scale = 2.0
    expected = _expected_hw(scale, size, None, (6, 5))
    with torch.no_grad():
        named_or_finite(
            lambda: eqsr(lr, scale=scale, size=size), SCALE_WORDS, lambda o: _check_hw(expected, o)
        )


@FUZZ
@given(
    scale=st.one_of(SCALE_NUMBER, st.tuples(SCALE_NUMBER, SCALE_NUMBER), st.sampled_from([1e4])),
    size=st.one_of(st.none(), SIZE_ARG),
    max_window_pixels=st.one_of(st.none(), st.integers(-2, 300), st.sampled_from([2.5, "64"])),
    max_output_pixels=st.one_of(st.just(2**31), st.integers(-1, 2000), st.sampled_from([1.5])),
)
def test_upscale(asr, scale, size, max_window_pixels, max_output_pixels):
    lr = torch.rand(1, 3, 6, 5)
    expected = _expected_hw(None if size is not None else scale, size, None, (6, 5))
    words = (*SCALE_WORDS, "max_window_pixels", "max_output_pixels")
    if size is not None:
        scale = None
    named_or_finite(
        lambda: scaleeq.upscale(
            asr,
            lr,
            scale=scale,
            size=size,
            max_window_pixels=max_window_pixels,
            max_output_pixels=max_output_pixels,
        ),
        words,
        lambda out: _check_hw(expected, out),
    )


@FUZZ
@given(scale=st.one_of(SCALE_NUMBER, scale_args(batch=2)))
def test_scale_of_afe_and_adaptive_conv(scale):
    """AFE blocks and AdaptiveConv2d at any scale: named errors or finite outputs (a finite
    scale of 1e39 used to give NaN)."""
    torch.manual_seed(0)
    x = torch.rand(2, 4, 6, 5)
    conv = AdaptiveConv2d(4, 4, 3, zero_init=False)
    block = AFEBlock(4, hidden=8)
    with torch.no_grad():
        for module in (conv, block):
            named_or_finite(
                lambda m=module: m(x, scale),
                SCALE_WORDS,
                lambda out: out.shape == x.shape,
            )


# --- input tensors --------------------------------------------------------------------------------


INPUT_SHAPES = st.sampled_from(
    [(1, 3, 6, 5), (2, 3, 6, 5), (0, 3, 6, 5), (1, 4, 6, 5), (1, 3, 0, 5), (3, 6, 5),
     (1, 1, 3, 6, 5), (1, 3, 1, 1), (1, 8, 6, 5), (1, 3, 2, 9)]
)  # fmt: skip
INPUT_DTYPES = st.sampled_from(
    [torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
     torch.uint8, torch.bool, torch.complex64]
)  # fmt: skip
INPUT_WORDS = ("lr", "feat", "x ", "x must", "x has", "batch", "input", "channels", "dtype")


def _tensor(shape, dtype):
    t = torch.rand(shape)
    return t.to(dtype) if dtype != torch.bool else t > 0.5


@FUZZ
@given(shape=INPUT_SHAPES, dtype=INPUT_DTYPES, values=st.sampled_from(["rand", "nan", "big"]))
def test_input_tensors(nk, asr, eqsr, shape, dtype, values):
    """Every model entry point with inputs of any rank, batch, channel count and dtype."""
    x = _tensor(shape, dtype)
    if values != "rand" and x.is_floating_point():
        x = x.clone()
        x.view(-1)[:1] = float("nan") if values == "nan" else 1e30
    finite_in = not x.is_floating_point() or bool(torch.isfinite(x).all())
    calls = {
        "nk": lambda: nk(x[:, :4] if x.ndim == 4 and x.shape[1] == 8 else x, scale=2),
        "asr": lambda: asr(x, scale=2),
        "eqsr": lambda: eqsr(x, scale=2),
        "upscale": lambda: scaleeq.upscale(asr, x, scale=2),
        "afe": lambda: AFEBlock(3)(x, 2.0),
        "conv": lambda: AdaptiveConv2d(3, 3, 3)(x, 2.0),
    }
    with torch.no_grad():
        for name, call in calls.items():
            try:
                out = call()
            except (ValueError, TypeError) as e:
                assert any(w in str(e) for w in INPUT_WORDS), f"{name}: {type(e).__name__}: {e}"
                continue
            assert out.ndim == 4 and out.shape[0] == x.shape[0], name
            if finite_in and values == "rand":
                assert bool(torch.isfinite(out).all()), f"{name}: non-finite output"


# --- constructor arguments ------------------------------------------------------------------------

#: Mostly valid (so the outputs get checked too), often not.
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


@FUZZ
@given(
    hidden=INT_ARG,
    blocks=INT_ARG,
    kernel_size=INT_ARG,
    num_freqs=INT_ARG,
    group_channels=INT_ARG,
    lengthscale=FLOAT_ARG,
    offset_unit=FLOAT_ARG,
    out_channels=INT_ARG,
    extra=st.sampled_from(
        [{}, {"backend": "cuda"}, {"rounding": "floor"}, {"channel_attention": "x"},
         {"activation": "tanh"}, {"scale_mlp": True}, {"channel_attention": "none"}]
    ),
)  # fmt: skip
def test_neural_kriging_constructor(
    hidden, blocks, kernel_size, num_freqs, group_channels, lengthscale, offset_unit, out_channels,
    extra,
):  # fmt: skip
    kwargs = {
        "hidden": hidden, "blocks": blocks, "kernel_size": kernel_size, "num_freqs": num_freqs,
        "group_channels": group_channels, "lengthscale": lengthscale,
        "offset_unit": offset_unit, "out_channels": out_channels, **extra,
    }  # fmt: skip
    try:
        up = NeuralKrigingUpsampler(4, **kwargs)
    except (ValueError, TypeError) as e:
        assert any(k in str(e) for k in kwargs), f"{type(e).__name__} names no argument: {e}"
        return
    with torch.no_grad():
        out = up(torch.rand(1, 4, 6, 5), scale=1.5)
    assert out.shape == (1, out_channels, 9, 8) and bool(torch.isfinite(out).all())


@FUZZ
@given(
    channels=st.tuples(INT_ARG, INT_ARG),
    kernel_size=st.one_of(INT_ARG, st.tuples(st.integers(-1, 4), st.integers(-1, 4))),
    stride=st.one_of(INT_ARG, st.tuples(st.integers(-1, 3), st.integers(-1, 3))),
    padding=st.one_of(
        st.sampled_from(["same", "valid", "full", -1, 0, 1, 2, (1, 0), (-1, 1), 1.5]),
    ),
    num_freqs=INT_ARG,
    eps=FLOAT_ARG,
    impl=st.sampled_from(["auto", "scale", "grouped", "fast"]),
)
def test_adaptive_conv_constructor(channels, kernel_size, stride, padding, num_freqs, eps, impl):
    kwargs = {
        "kernel_size": kernel_size, "stride": stride, "padding": padding,
        "num_freqs": num_freqs, "eps": eps, "impl": impl,
    }  # fmt: skip
    c_in, c_out = channels
    try:
        conv = AdaptiveConv2d(c_in, c_out, zero_init=False, **kwargs)
    except (ValueError, TypeError) as e:
        words = (*kwargs, "in_channels", "out_channels")
        assert any(k in str(e) for k in words), f"{type(e).__name__} names no argument: {e}"
        return
    x = torch.rand(2, c_in, 6, 5)
    with torch.no_grad():
        out = named_or_finite(lambda: conv(x, 2.0), ("x ", "x must", "kernel", "padding", "input"))
    if out is None:
        return
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    if conv.padding == "same":
        ph, pw = None, None
        assert out.shape == (2, c_out, 6, 5)
    else:
        ph, pw = conv.padding
        expected = ((6 + 2 * ph - kh) // sh + 1, (5 + 2 * pw - kw) // sw + 1)
        assert out.shape == (2, c_out, *expected)


@FUZZ
@given(
    dim=INT_ARG,
    hidden=st.one_of(st.none(), INT_ARG),
    kernel_size=INT_ARG,
    num_freqs=INT_ARG,
    se_ratio=FLOAT_ARG,
    skip=st.sampled_from(["input", "hidden", "none"]),
    identity_init=st.booleans(),
)
def test_afe_block_constructor(dim, hidden, kernel_size, num_freqs, se_ratio, skip, identity_init):
    kwargs = {
        "hidden": hidden, "kernel_size": kernel_size, "num_freqs": num_freqs,
        "se_ratio": se_ratio, "skip": skip, "identity_init": identity_init,
    }  # fmt: skip
    try:
        block = AFEBlock(dim, **kwargs)
    except (ValueError, TypeError) as e:
        assert any(k in str(e) for k in (*kwargs, "dim")), f"{type(e).__name__}: {e}"
        return
    x = torch.rand(1, dim, 6, 5)
    with torch.no_grad():
        out = block(x, 2.0)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    if identity_init:
        torch.testing.assert_close(out, x)


@FEW
@given(
    afe=st.sampled_from(["per_group", "none", "all"]),
    afe_every=st.one_of(st.none(), INT_ARG),
    skip=st.sampled_from(["none", "bicubic", "residual"]),
    pixel_range=st.one_of(st.none(), FLOAT_ARG),
    body=st.sampled_from([None, None, "body", "nope"]),
    tail=st.sampled_from([None, None, "upsample", 3]),
)
def test_retrofit_options(afe, afe_every, skip, pixel_range, body, tail):
    torch.manual_seed(0)
    net = EDSR(num_feat=8, num_block=2, upscale=2)
    kwargs = {
        "afe": afe, "afe_every": afe_every, "skip": skip, "pixel_range": pixel_range,
        "body": body, "tail": tail,
    }  # fmt: skip
    try:
        model = scaleeq.retrofit(
            net, upsampler=NeuralKrigingUpsampler(8, hidden=8, blocks=1), **kwargs
        )
    except (ValueError, TypeError) as e:
        assert any(k in str(e) for k in kwargs), f"{type(e).__name__}: {e}"
        return
    with torch.no_grad():  # a body that does not read images fails naming the body
        named_or_finite(
            lambda: model(torch.rand(1, 3, 6, 5), scale=1.5),
            ("the body 'body' named in retrofit(body=...)",),
            lambda out: out.shape == (1, 3, 9, 8),
        )
