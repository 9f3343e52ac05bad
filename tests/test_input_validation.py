"""Named errors at the public API's boundary, the same property over many entry points: bad
input tensors, devices, dtypes, scales and constructor arguments give a ValueError / TypeError
that names the argument (or a finite output), never an error from deep inside torch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import scaleeq
from scaleeq import AdaptiveConv2d, AFEBlock, NeuralKrigingUpsampler

from ._helpers import (
    FUZZ,
    SCALE_NUMBER,
    SCALE_WORDS,
    fuzz_eqsr,
    fuzz_kriging_upsampler,
    fuzz_retrofitted_edsr,
    named_or_finite,
    scale_args,
)

# -- Issue 16's hand-made mutants: wrong-number bugs the suite used to miss ----------------------
# The test states an invariant or compares against an independent reference, so the mutation it
# names fails it.


def test_bad_inputs_and_constructor_arguments_get_named_errors():
    import scaleeq
    from scaleeq import AdaptiveConv2d
    from scaleeq.models import EDSR

    up = NeuralKrigingUpsampler(8, hidden=16, blocks=1)
    asr = scaleeq.retrofit(
        EDSR.from_preset("tiny"), upsampler=NeuralKrigingUpsampler(16, hidden=16, blocks=1)
    )
    with pytest.raises(ValueError, match="batch is empty"):
        up(torch.rand(0, 8, 6, 5), scale=2)
    with pytest.raises(ValueError, match="lr must have 3 channels"):
        asr(torch.rand(1, 4, 6, 5), scale=2)
    for dtype in (torch.float16, torch.float64):
        with pytest.raises(TypeError, match=rf"lr has dtype {dtype}.*weights are torch.float32"):
            asr(torch.rand(1, 3, 6, 5, dtype=dtype), scale=2)
        with pytest.raises(TypeError, match="feat has dtype"):
            up(torch.rand(1, 8, 6, 5, dtype=dtype), scale=2)
    assert asr.double()(torch.rand(1, 3, 6, 5, dtype=torch.float64), scale=2).dtype == torch.float64
    with pytest.raises(ValueError, match="kernel_size must be"):
        AdaptiveConv2d(8, 8, 0)
    with pytest.raises(ValueError, match="stride must be"):
        AdaptiveConv2d(8, 8, 3, stride=0)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        AdaptiveConv2d(8, 8, 3, eps=-1)
    with pytest.raises(ValueError, match="group_channels"):
        NeuralKrigingUpsampler(8, group_channels=0)
    for name, value in (("offset_unit", float("nan")), ("lengthscale", float("inf"))):
        with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
            NeuralKrigingUpsampler(8, **{name: value})


# -- Issue 12's reliability promises: device and dtype mismatches ----------------------------------


def _entry_points():
    import scaleeq
    from scaleeq import AdaptiveConv2d, AFEBlock, NeuralKrigingUpsampler
    from scaleeq.layers.afe import AFETokenBlock
    from scaleeq.models import EDSR, EQSR

    def asr():
        return scaleeq.retrofit(
            EDSR.from_preset("tiny", upscale=2),
            upsampler=NeuralKrigingUpsampler(16, hidden=8, blocks=1),
        )

    return {
        "NeuralKrigingUpsampler": (
            lambda: NeuralKrigingUpsampler(8, hidden=8, blocks=1),
            lambda m, x: m(x, scale=2),
            8,
            "feat",
        ),
        "AdaptiveConv2d": (lambda: AdaptiveConv2d(8, 8, 3), lambda m, x: m(x, 2.0), 8, "x"),
        "AFEBlock": (lambda: AFEBlock(8), lambda m, x: m(x, 2.0), 8, "x"),
        "AFETokenBlock": (
            lambda: AFETokenBlock(8),
            lambda m, x: m(x.flatten(2).transpose(1, 2), (6, 5), 2.0),
            8,
            "x",
        ),
        "ArbitraryScaleSR": (asr, lambda m, x: m(x, scale=2), 3, "lr"),
        "upscale": (asr, lambda m, x: scaleeq.upscale(m, x, scale=2), 3, "lr"),
        "EQSR": (lambda: EQSR.from_preset("tiny"), lambda m, x: m(x, scale=2), 3, "lr"),
    }


@pytest.mark.parametrize("entry", list(_entry_points()))
def test_device_and_dtype_mismatches_are_named(entry):
    """Without a GPU the 'meta' device stands in for another device: a model on it given a CPU
    input (and the reverse) used to fail deep inside torch ("Tensor on device cpu is not on
    the expected device meta!", "Cannot copy out of meta tensor")."""
    make, call, channels, name = _entry_points()[entry]
    x = torch.rand(1, channels, 6, 5)
    with torch.no_grad():
        with pytest.raises(
            ValueError, match=rf"{name} is on device cpu but .* weights are on meta"
        ):
            call(make().eval().to("meta"), x)
        with pytest.raises(
            ValueError, match=rf"{name} is on device meta but .* weights are on cpu"
        ):
            call(make().eval(), x.to("meta"))
        with pytest.raises(TypeError, match=rf"{name} has dtype torch.float32 .* torch.float64"):
            call(make().eval().double(), x)
        out = call(make().eval().double(), x.double())  # matching: runs
    assert out.dtype == torch.float64 and bool(torch.isfinite(out).all())


# -- Property-based fuzzing of the public API (issue 12) ----------------------------------------
# For random good and bad argument values a call either raises ValueError / TypeError whose
# message names the argument, or returns a finite output of the documented size; any other
# exception, a silent NaN, a wrong size or a slow example fails. Strategies, settings and checks:
# tests/_helpers.py.


# shared tiny modules (built once; calls never change them)
@pytest.fixture(scope="module")
def nk():
    return fuzz_kriging_upsampler()


@pytest.fixture(scope="module")
def asr():
    return fuzz_retrofitted_edsr()


@pytest.fixture(scope="module")
def eqsr():
    return fuzz_eqsr()


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
