"""AdaptiveConv2d: shapes, formulations, identity at init, scale dependence, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from scaleeq import AdaptiveConv2d, ScaleEncoding, as_scale_tensor, scale_context

from .conftest import TOL


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
@pytest.mark.parametrize("impl", ["scale", "grouped"])
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
