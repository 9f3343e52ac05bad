"""AFEBlock and its token form."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from scaleeq import AFEBlock, AFETokenBlock, scale_context

from ._helpers import FLOAT_ARG, FUZZ, IGNORE_EVEN_SAME_PADDING, INT_ARG

# the fuzz tests' constructors may be given an even kernel with padding="same" (torch warns)
pytestmark = IGNORE_EVEN_SAME_PADDING


def trained_like(block: AFEBlock) -> AFEBlock:
    """Perturb every parameter, as after some training (scale mapping included)."""
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return block


def afe_reference(block: AFEBlock, x: torch.Tensor, scale) -> torch.Tensor:
    """The block's equations with functional ops, written out independently."""

    def ln(t, norm):  # LayerNorm over channels per pixel
        mu = t.mean(1, keepdim=True)
        var = t.var(1, unbiased=False, keepdim=True)
        return (t - mu) / torch.sqrt(var + norm.eps) * norm.weight[:, None, None] + norm.bias[
            :, None, None
        ]

    a = F.conv2d(x, block.pw_in.weight, block.pw_in.bias)
    a = a + block.conv(F.gelu(ln(a, block.norm1)), scale)
    u = F.gelu(ln(a, block.norm2))
    gate = torch.sigmoid(F.silu(u.mean((2, 3)) @ block.se.fc1.weight.t()) @ block.se.fc2.weight.t())
    out = F.conv2d(u * gate[:, :, None, None], block.pw_out.weight, block.pw_out.bias)
    return (x if block.residual == "input" else a) + out


@pytest.mark.parametrize("skip", ["input", "hidden"])
def test_matches_written_out_equations(skip):
    block = trained_like(AFEBlock(8, skip=skip))
    x = torch.randn(2, 8, 7, 9)
    scale = torch.tensor([1.5, 3.25])
    torch.testing.assert_close(
        block(x, scale), afe_reference(block, x, scale), rtol=1e-5, atol=1e-5
    )


@given(
    b=st.integers(1, 3),
    dim=st.integers(1, 12),
    hidden=st.integers(1, 12),
    h=st.integers(1, 10),
    w=st.integers(1, 10),
    k=st.sampled_from([1, 3, 5]),
)
def test_shapes(b, dim, hidden, h, w, k):
    block = AFEBlock(dim, hidden=hidden, kernel_size=k)
    x = torch.randn(b, dim, h, w)
    assert block(x, torch.empty(b).uniform_(1, 4)).shape == x.shape


@given(scale=st.one_of(st.floats(0.5, 30.0), st.tuples(st.floats(0.5, 30.0), st.floats(0.5, 30.0))))
def test_identity_init_is_exact_identity(scale):
    block = AFEBlock(16, hidden=24, identity_init=True)
    x = torch.randn(2, 16, 6, 5)
    assert torch.equal(block(x, scale), x)
    assert torch.equal(block(x, torch.tensor([1.3, 8.0])), x)


def test_identity_init_still_learns():
    block = AFEBlock(8, identity_init=True)
    x = torch.randn(2, 8, 6, 6)
    block(x, 2.0).sin().sum().backward()
    assert block.pw_out.weight.grad.abs().sum() > 0


def test_output_varies_with_scale_only_once_mapping_is_nonzero():
    block = AFEBlock(8)
    x = torch.randn(1, 8, 8, 8)
    torch.testing.assert_close(block(x, 2.0), block(x, 5.0), rtol=1e-6, atol=1e-6)
    trained_like(block)
    assert (block(x, 2.0) - block(x, 5.0)).abs().max() > 1e-3


@given(seed=st.integers(0, 2**16))
def test_per_sample_scales_equal_separate_runs(seed):
    g = torch.Generator().manual_seed(seed)
    block = trained_like(AFEBlock(6))
    x = torch.randn(3, 6, 5, 7, generator=g)
    scale = 1 + 4 * torch.rand(3, 2, generator=g)
    y = block(x, scale)
    for i in range(3):
        torch.testing.assert_close(
            y[i : i + 1], block(x[i : i + 1], tuple(scale[i].tolist())), rtol=1e-5, atol=1e-5
        )


def test_token_form_equals_nchw_form():
    nchw = trained_like(AFEBlock(8))
    tok = AFETokenBlock(8)
    tok.load_state_dict(nchw.state_dict())
    x = torch.randn(2, 8, 5, 7)
    tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, C), row-major
    y_tok = tok(tokens, (5, 7), scale=torch.tensor([2.0, 3.5]))
    y = nchw(x, torch.tensor([2.0, 3.5]))
    torch.testing.assert_close(y_tok, y.flatten(2).transpose(1, 2))


def test_drop_in_with_scale_context():
    block = trained_like(AFEBlock(4))
    body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), block)
    x = torch.randn(2, 4, 6, 6)
    with scale_context(torch.tensor([2.0, 4.0])):
        y = body(x)
    torch.testing.assert_close(y, block(body[0](x), torch.tensor([2.0, 4.0])))


class TestErrors:
    def test_no_scale(self):
        with pytest.raises(ValueError, match="AdaptiveConv2d needs a scale"):
            AFEBlock(4)(torch.randn(1, 4, 5, 5))

    def test_rank_and_channels(self):
        with pytest.raises(ValueError, match="4-D"):
            AFEBlock(4)(torch.randn(4, 5, 5), 2.0)
        with pytest.raises(ValueError, match="x must have 4 channels in dim 1, got 3"):
            AFEBlock(4)(torch.randn(1, 3, 5, 5), 2.0)

    def test_batch_mismatch(self):
        with pytest.raises(ValueError, match="per-sample scales"):
            AFEBlock(4)(torch.randn(2, 4, 5, 5), torch.tensor([2.0, 3.0, 4.0]))

    def test_tokens(self):
        blk = AFETokenBlock(4)
        with pytest.raises(ValueError, match=r"x has 30 tokens but x_size=\(5, 5\)"):
            blk(torch.randn(1, 30, 4), (5, 5), 2.0)
        with pytest.raises(ValueError, match="x must have 4 channels in dim 2"):
            blk(torch.randn(1, 25, 3), (5, 5), 2.0)
        with pytest.raises(ValueError, match="3-D"):
            blk(torch.randn(1, 4, 5, 5), (5, 5), 2.0)

    def test_constructor(self):
        with pytest.raises(ValueError, match="residual='hidden' needs hidden == dim"):
            AFEBlock(4, hidden=8, residual="hidden")
        with pytest.raises(ValueError, match="identity_init=True needs residual='input'"):
            AFEBlock(4, residual="hidden", identity_init=True)
        with pytest.raises(ValueError, match="residual must be 'input' or 'hidden'"):
            AFEBlock(4, residual="image")
        with pytest.raises(TypeError, match="residual= or its former name skip="):
            AFEBlock(4, residual="hidden", skip="input")
        with pytest.raises(ValueError, match="se_ratio"):
            AFEBlock(4, se_ratio=0)
        with pytest.raises(ValueError, match="dim"):
            AFEBlock(0)


# -- Tests written for surviving mutants of the mutation-testing run (docs/testing.md) ----------
# Each states an invariant or compares with an independent reference; none takes its expected
# value from the code under test.


def test_afe_block_documented_defaults_and_structure():
    """AFEBlock(dim): a 3x3 demodulated AdaptiveConv2d without bias, scale encoding with 8
    frequencies (2 * (2 * 8 + 1) = 34 features), SE bottleneck int(0.25 * hidden) but at least 1,
    1x1 projections with bias; se_ratio = 1 is allowed (the range is (0, 1])."""
    from scaleeq import AFEBlock

    blk = AFEBlock(8)
    assert blk.conv.kernel_size == (3, 3) and blk.conv.bias is None
    assert blk.conv.encoding.out_features == 34 and blk.conv.demodulate is True
    assert blk.se.fc1.out_features == 2 and blk.pw_in.bias is not None
    assert blk.identity_init is False and AFEBlock(8, identity_init=True).identity_init is True
    assert AFEBlock(2).se.fc1.out_features == 1  # int(0.5) = 0 -> at least 1
    assert AFEBlock(8, se_ratio=1.0).se.fc1.out_features == 8
    for kwargs, name in (({"dim": 0}, "dim"), ({"dim": 4, "hidden": 0}, "hidden"),
                         ({"dim": 4, "se_ratio": -1.0}, "se_ratio")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            AFEBlock(**kwargs)
    with pytest.raises(ValueError, match=r"^x must be a 4-D tensor of shape \(B, C, H, W\), got"):
        blk(torch.rand(8, 5, 5), 2.0)


def test_afe_block_passes_its_arguments_down_and_token_block_errors_are_exact():
    from scaleeq import AFEBlock, AFETokenBlock, ScaleEncoding
    from scaleeq.layers.afe import LayerNorm2d

    enc = ScaleEncoding(2)
    blk = AFEBlock(8, hidden=6, num_freqs=4, demodulate=False)
    assert blk.hidden == 6 and blk.conv.encoding.out_features == 18 and not blk.conv.demodulate
    assert AFEBlock(8, encoding=enc).conv.encoding is enc
    with pytest.raises(ValueError, match=r"^se_ratio must be in \(0, 1\]"):
        AFEBlock(8, se_ratio=1.5)
    # LayerNorm2d normalises over channels with the eps it was given, not layer_norm's 1e-5
    ln = LayerNorm2d(2, eps=1e-6)
    x = torch.tensor([0.0, 2e-3], dtype=torch.float64).view(1, 2, 1, 1)  # variance 1e-6
    ln = ln.double()
    torch.testing.assert_close(ln(x).flatten(),
                               torch.tensor([-1.0, 1.0], dtype=torch.float64) / math.sqrt(2.0),
                               rtol=1e-9, atol=1e-9)  # fmt: skip
    tok = AFETokenBlock(4)
    with pytest.raises(ValueError, match=r"^x must be a 3-D tensor of shape \(B, L, C\), got"):
        tok(torch.rand(1, 4, 2, 2), (2, 2), 2.0)
    with pytest.raises(TypeError, match=r"^x_size must be an int or a pair of ints"):
        tok(torch.rand(1, 4, 4), (1, 2, 2), 2.0)


# -- Property-based fuzzing of the public API (issue 12) ----------------------------------------
# For random good and bad argument values a call either raises ValueError / TypeError whose
# message names the argument, or returns a finite output of the documented size; any other
# exception, a silent NaN, a wrong size or a slow example fails. Strategies, settings and checks:
# tests/_helpers.py.


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
