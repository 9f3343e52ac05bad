"""AdaptiveConv2d: shapes, formulations, identity at init, scale dependence, errors."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from scaleeq import AdaptiveConv2d, ScaleEncoding, as_scale_tensor, scale_context
from scaleeq.functional import auto_impl

from ._helpers import FLOAT_ARG, FUZZ, IGNORE_EVEN_SAME_PADDING, INT_ARG, named_or_finite
from .conftest import TOL

# the fuzz tests' constructors may be given an even kernel with padding="same" (torch warns)
pytestmark = IGNORE_EVEN_SAME_PADDING


def per_sample_kernel_reference(layer: AdaptiveConv2d, x: torch.Tensor, scale) -> torch.Tensor:
    """Eq. 2 written out: one explicitly modulated (and demodulated) kernel per sample."""
    r = as_scale_tensor(scale, x.shape[0], dtype=torch.float64)
    outs = []
    for b in range(x.shape[0]):
        enc = ScaleEncoding(layer.encoding.num_freqs)(r[b : b + 1], dtype=x.dtype)
        s = layer.to_style(enc)[0]  # (C_in,)
        w = layer.weight * (1 + s)[None, :, None, None]
        if layer.demodulate:
            w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + layer.eps)
        outs.append(
            F.conv2d(x[b : b + 1], w, layer.bias, stride=layer.stride, padding=layer.padding)
        )
    return torch.cat(outs)


def random_layer(cin, cout, k=3, dtype=torch.float32, **kw) -> AdaptiveConv2d:
    layer = AdaptiveConv2d(cin, cout, k, zero_init=False, **kw).to(dtype)
    with torch.no_grad():  # make the scale dependence strong enough to see
        layer.to_style.weight.normal_(0, 0.3)
        layer.to_style.bias.normal_(0, 0.1)
    return layer


@given(
    b=st.integers(1, 3),
    cin=st.integers(1, 6),
    cout=st.integers(1, 6),
    h=st.integers(1, 11),
    w=st.integers(1, 11),
    k=st.sampled_from([1, 3, 5]),
    stride=st.sampled_from([1, 2]),
)
def test_shapes_match_conv2d(b, cin, cout, h, w, k, stride):
    layer = random_layer(cin, cout, k, stride=stride)
    ref = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)
    x = torch.randn(b, cin, h, w)
    scale = torch.empty(b).uniform_(1, 4)
    assert layer(x, scale).shape == ref(x).shape
    assert layer(x, 2.0).shape == ref(x).shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("impl", ["input", "grouped", "scale"])  # "scale": the former name
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_formulations_match_per_sample_kernels(dtype, impl, demodulate, bias):
    rtol, atol = TOL[dtype]
    layer = random_layer(5, 7, dtype=dtype, impl=impl, demodulate=demodulate, bias=bias)
    x = torch.randn(3, 5, 9, 10, dtype=dtype, requires_grad=True)
    scale = torch.tensor([[1.3, 2.0], [3.7, 3.7], [12.0, 4.5]], dtype=dtype)
    y = layer(x, scale)
    y_ref = per_sample_kernel_reference(layer, x, scale)
    torch.testing.assert_close(y, y_ref, rtol=rtol, atol=atol)
    g = torch.randn_like(y)
    params = [x, layer.weight, layer.to_style.weight, layer.to_style.bias]
    grads = torch.autograd.grad(y, params, g)
    grads_ref = torch.autograd.grad(y_ref, params, g)
    for got, ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("demodulate", [True, False])
def test_shared_scale_path_matches_reference(demodulate):
    layer = random_layer(6, 4, demodulate=demodulate)
    x = torch.randn(2, 6, 8, 8)
    torch.testing.assert_close(
        layer(x, (2.5, 1.5)), per_sample_kernel_reference(layer, x, (2.5, 1.5))
    )


@given(b=st.integers(2, 4), seed=st.integers(0, 2**16))
def test_per_sample_scales_equal_separate_runs(b, seed):
    g = torch.Generator().manual_seed(seed)
    layer = random_layer(4, 4)
    x = torch.randn(b, 4, 7, 6, generator=g)
    scale = 1 + 5 * torch.rand(b, 2, generator=g)
    y = layer(x, scale)
    for i in range(b):
        torch.testing.assert_close(
            y[i : i + 1], layer(x[i : i + 1], tuple(scale[i].tolist())), rtol=1e-5, atol=1e-5
        )


def test_output_varies_with_scale_once_mapping_is_nonzero():
    layer = random_layer(4, 4)
    x = torch.randn(1, 4, 8, 8)
    y2, y3, y3b = layer(x, 2.0), layer(x, 3.0), layer(x, (3.0, 2.0))
    assert (y2 - y3).abs().max() > 1e-3
    assert (y3 - y3b).abs().max() > 1e-3  # r_w matters too


@pytest.mark.parametrize("demodulate", [True, False])
def test_zero_init_is_scale_independent(demodulate):
    layer = AdaptiveConv2d(4, 6, 3, demodulate=demodulate)
    x = torch.randn(3, 4, 8, 8)
    ys = [layer(x, r) for r in (1.0, 2.5, (7.0, 1.5), torch.tensor([1.2, 3.3, 29.0]))]
    for y in ys[1:]:
        torch.testing.assert_close(y, ys[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", [2.0, (3.5, 1.5), torch.tensor([1.0, 4.2])])
def test_identity_at_init_without_demodulation_is_exact(scale):
    conv = nn.Conv2d(5, 6, 3, padding=1)
    layer = AdaptiveConv2d.from_conv(conv)
    x = torch.randn(2, 5, 9, 7)
    assert torch.equal(layer(x, scale), conv(x))


def test_identity_at_init_with_demodulation_is_weight_standardisation():
    layer = AdaptiveConv2d(5, 6, 3)  # zero_init=True, demodulate=True
    w = layer.weight / torch.sqrt(
        layer.weight.square().sum(dim=(1, 2, 3), keepdim=True) + layer.eps
    )
    x = torch.randn(2, 5, 9, 7)
    expected = F.conv2d(x, w, layer.bias, padding=1)
    torch.testing.assert_close(layer(x, torch.tensor([1.5, 6.0])), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer(x, 3.0), expected, rtol=1e-5, atol=1e-6)
    assert (F.conv2d(x, layer.weight, layer.bias, padding=1) - expected).abs().max() > 1e-2


@pytest.mark.parametrize("scale", [2.0, torch.tensor([1.5, 3.0])])
def test_gradients_reach_the_scale_mapping_from_zero_init(scale):
    layer = AdaptiveConv2d(4, 4, 3)
    layer(torch.randn(2, 4, 6, 6), scale).square().sum().backward()
    assert layer.to_style.weight.grad is not None
    assert layer.to_style.weight.grad.abs().sum() > 0


def test_gradcheck_float64():
    layer = random_layer(2, 3, dtype=torch.float64)
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([1.5, 2.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x, w: _with_weight(layer, w)(x, scale),
        (x, layer.weight.detach().clone().requires_grad_()),
    )


def _with_weight(layer: AdaptiveConv2d, w: torch.Tensor):
    def run(x, scale):
        return torch.func.functional_call(layer, {"weight": w}, (x, scale))

    return run


def test_scale_context_drop_in():
    layer = random_layer(3, 3)
    body = nn.Sequential(nn.Conv2d(3, 3, 1), layer, nn.ReLU())
    x = torch.randn(2, 3, 6, 6)
    with scale_context((2.0, 3.0)):
        y = body(x)
    torch.testing.assert_close(y, torch.relu(layer(body[0](x), (2.0, 3.0))))
    # an explicit scale wins over the context
    with scale_context(9.0):
        torch.testing.assert_close(layer(x, 2.0), layer(x, torch.tensor([2.0, 2.0])))


def test_noncontiguous_input():
    layer = random_layer(4, 4)
    x = torch.randn(2, 8, 6, 4)[:, ::2].transpose(2, 3)
    assert not x.is_contiguous()
    torch.testing.assert_close(
        layer(x, torch.tensor([2.0, 3.0])), layer(x.contiguous(), torch.tensor([2.0, 3.0]))
    )


class TestErrors:
    def test_no_scale_no_context(self):
        with pytest.raises(ValueError, match=r"AdaptiveConv2d needs a scale.*scale_context"):
            AdaptiveConv2d(3, 3, 3)(torch.randn(1, 3, 4, 4))

    def test_rank(self):
        with pytest.raises(ValueError, match=r"x must be a 4-D tensor.*got shape \(3, 4, 4\)"):
            AdaptiveConv2d(3, 3, 3)(torch.randn(3, 4, 4), 2.0)

    def test_not_a_tensor_or_not_float(self):
        with pytest.raises(TypeError, match="x must be a torch.Tensor"):
            AdaptiveConv2d(3, 3, 3)([1, 2], 2.0)
        with pytest.raises(TypeError, match="floating-point"):
            AdaptiveConv2d(3, 3, 3)(torch.ones(1, 3, 4, 4, dtype=torch.long), 2.0)

    def test_channels(self):
        with pytest.raises(ValueError, match="x must have 3 channels in dim 1, got 4"):
            AdaptiveConv2d(3, 3, 3)(torch.randn(1, 4, 4, 4), 2.0)

    def test_batch_mismatch(self):
        with pytest.raises(ValueError, match="3 per-sample scales but the input batch has 2"):
            AdaptiveConv2d(3, 3, 3)(torch.randn(2, 3, 4, 4), torch.tensor([2.0, 3.0, 4.0]))

    @pytest.mark.parametrize("bad", [float("nan"), 0.0, -2.0, torch.tensor([1.0, float("inf")])])
    def test_bad_scale(self, bad):
        with pytest.raises(ValueError, match="finite and > 0"):
            AdaptiveConv2d(3, 3, 3)(torch.randn(2, 3, 4, 4), bad)

    def test_constructor(self):
        with pytest.raises(ValueError, match="in_channels"):
            AdaptiveConv2d(0, 3, 3)
        with pytest.raises(ValueError, match="impl"):
            AdaptiveConv2d(3, 3, 3, impl="fast")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="kernel_size"):
            AdaptiveConv2d(3, 3, 2.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="padding"):
            AdaptiveConv2d(3, 3, 3, padding="full")
        with pytest.raises(ValueError, match="even kernel_size"):
            AdaptiveConv2d(3, 3, 2, stride=2)
        with pytest.raises(TypeError, match="conv must be an nn.Conv2d"):
            AdaptiveConv2d.from_conv(nn.Linear(3, 3))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="groups=1"):
            AdaptiveConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=2))


# -- Tests written for surviving mutants of the mutation-testing run (docs/testing.md) ----------
# Each states an invariant or compares with an independent reference; none takes its expected
# value from the code under test.


def test_auto_impl_follows_the_documented_cpu_rule():
    cpu, other = torch.device("cpu"), torch.device("meta")
    assert auto_impl(cpu, 128, 128) == "grouped"  # up to 128 x 128 channels on the CPU
    assert auto_impl(cpu, 1, 128 * 128) == "grouped"
    assert auto_impl(cpu, 128, 129) == "input"
    assert auto_impl(cpu, 129, 128) == "input"
    assert auto_impl(other, 4, 4) == "input"  # elsewhere: input scaling


@pytest.mark.parametrize(
    "conv",
    [
        torch.nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=True, dtype=torch.float64),
        torch.nn.Conv2d(3, 5, (3, 1), padding="same", bias=False, dtype=torch.float64),
    ],
)
def test_from_conv_is_the_same_convolution_at_every_scale(conv):
    layer = AdaptiveConv2d.from_conv(conv)
    assert layer.weight.dtype == torch.float64 and layer.encoding.num_freqs == 8
    assert not layer.demodulate
    x = torch.rand(2, 3, 9, 8, dtype=torch.float64)
    for scale in (1.5, 3.7):
        torch.testing.assert_close(layer(x, scale), conv(x), rtol=1e-12, atol=1e-12)
    assert AdaptiveConv2d.from_conv(conv, demodulate=True).demodulate


def test_from_conv_keeps_the_device_and_refuses_what_it_cannot_copy():
    meta = AdaptiveConv2d.from_conv(torch.nn.Conv2d(2, 2, 3, device="meta"))
    assert meta.weight.device.type == "meta" and meta.style(2.0).device.type == "meta"
    for bad in (
        torch.nn.Conv2d(2, 2, 3, dilation=2),
        torch.nn.Conv2d(2, 2, 3, groups=2),
        torch.nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
    ):
        with pytest.raises(ValueError, match="groups=1, dilation=1 and padding_mode='zeros'"):
            AdaptiveConv2d.from_conv(bad)


def test_adaptive_conv_errors_name_the_layout_size_and_scale():
    layer = AdaptiveConv2d(2, 2, 5, padding=0)
    with pytest.raises(ValueError, match=r"^x must be a 4-D tensor of shape \(B, C_in, H, W\)"):
        layer(torch.rand(2, 8, 8), 2.0)
    with pytest.raises(
        ValueError, match=r"too small for kernel_size \(5, 5\) with padding \(0, 0\)"
    ):
        layer(torch.rand(1, 2, 3, 8), 2.0)
    with pytest.raises(ValueError, match=r"^scale holds 3 per-sample scales"):
        layer(torch.rand(2, 2, 8, 8), torch.tensor([2.0, 3.0, 4.0]))
    same = AdaptiveConv2d(2, 2, (2, 2), padding="same")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: an even kernel with "same" may copy the input
        assert same(torch.rand(1, 2, 1, 1), 2.0).shape == (1, 2, 1, 1)  # any non-empty input


@torch.no_grad()  # reads parameter values only
def test_initialisation_follows_nn_conv2d_and_the_documented_style_init():
    """Weights and bias drawn like ``nn.Conv2d`` (uniform within 1 / sqrt(fan_in)), bias on by
    default, the style MLP at zero (``zero_init``) or N(0, 0.02^2)."""
    torch.manual_seed(0)
    layer = AdaptiveConv2d(32, 64, 3)
    bound = 1 / math.sqrt(32 * 9)  # what nn.Conv2d's kaiming_uniform(a=sqrt(5)) gives
    ref = torch.nn.Conv2d(32, 64, 3)
    torch.testing.assert_close(ref.weight.abs().max(), torch.tensor(bound), rtol=0.02, atol=0)
    for p in (layer.weight, layer.bias):
        assert p is not None
        assert float(p.max()) <= bound and float(p.min()) >= -bound
        assert float(p.max()) > 0.9 * bound and float(p.min()) < -0.9 * bound  # the full range
    assert float(layer.to_style.weight.abs().max()) == 0.0
    torch.manual_seed(0)
    small = AdaptiveConv2d(32, 64, 3, zero_init=False).to_style.weight
    assert 0.017 < float(small.std()) < 0.023 and float(small.abs().max()) > 0


@pytest.mark.parametrize("padding, size", [("valid", (5, 6)), ("same", (7, 8)), (2, (9, 10))])
def test_padding_modes_give_nn_conv2d_sizes_and_values(padding, size):
    torch.manual_seed(0)
    layer = AdaptiveConv2d(3, 4, 3, padding=padding, demodulate=False)
    ref = torch.nn.Conv2d(3, 4, 3, padding=padding)
    ref.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    x = torch.rand(1, 3, 7, 8)
    out = layer(x, 2.0)  # the style is 1 at initialisation: a plain convolution
    assert out.shape[-2:] == size
    torch.testing.assert_close(out, ref(x))


def test_adaptive_conv_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^in_channels"):
        AdaptiveConv2d(0, 2, 3)
    with pytest.raises(ValueError, match=r"^out_channels"):
        AdaptiveConv2d(2, 0, 3)
    for name in ("kernel_size", "stride", "padding"):
        args = {"kernel_size": 3, name: (1, 2, 3)}
        with pytest.raises(TypeError, match=rf"^{name} must be an int or a pair of ints"):
            AdaptiveConv2d(2, 2, **args)


def test_adaptive_conv_keeps_its_settings_and_encoding():
    """The documented eps default (1e-8), the chosen formulation (also in the repr) and a
    user's encoding module are kept as given."""
    from scaleeq.layers import ScaleEncoding

    assert AdaptiveConv2d(2, 2, 3).eps == 1e-8
    layer = AdaptiveConv2d(2, 2, 3, impl="grouped")
    assert layer.impl == "grouped" and "impl='grouped'" in repr(layer)
    enc = ScaleEncoding(3)
    layer = AdaptiveConv2d(2, 5, 3, encoding=enc)
    assert layer.encoding is enc and layer.to_style.in_features == enc.out_features


@pytest.mark.parametrize("kernel", [(3, 2), (2, 3)])
def test_same_padding_with_one_even_kernel_side_matches_nn_conv2d(kernel):
    torch.manual_seed(0)
    layer = AdaptiveConv2d(2, 3, kernel, padding="same", demodulate=False)
    ref = torch.nn.Conv2d(2, 3, kernel, padding="same")
    ref.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    x = torch.rand(1, 2, 6, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: an even kernel with "same" may copy the input
        torch.testing.assert_close(layer(x, 2.0), ref(x))


def test_from_conv_keeps_unpadded_and_asymmetric_padding_and_num_freqs():
    for padding in (0, (0, 2)):
        conv = torch.nn.Conv2d(3, 4, 3, padding=padding, dtype=torch.float64)
        layer = AdaptiveConv2d.from_conv(conv, num_freqs=4)
        assert layer.encoding.num_freqs == 4
        x = torch.rand(1, 3, 7, 8, dtype=torch.float64)
        torch.testing.assert_close(layer(x, 2.5), conv(x), rtol=1e-12, atol=1e-12)


# -- Property-based fuzzing of the public API (issue 12) ----------------------------------------
# For random good and bad argument values a call either raises ValueError / TypeError whose
# message names the argument, or returns a finite output of the documented size; any other
# exception, a silent NaN, a wrong size or a slow example fails. Strategies, settings and checks:
# tests/_helpers.py.


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
