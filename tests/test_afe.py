"""AFEBlock and its token form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from scaleeq import AFEBlock, AFETokenBlock, scale_context


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
    return (x if block.skip == "input" else a) + out


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
        with pytest.raises(ValueError, match="skip='hidden' needs hidden == dim"):
            AFEBlock(4, hidden=8, skip="hidden")
        with pytest.raises(ValueError, match="identity_init=True needs skip='input'"):
            AFEBlock(4, skip="hidden", identity_init=True)
        with pytest.raises(ValueError, match="se_ratio"):
            AFEBlock(4, se_ratio=0)
        with pytest.raises(ValueError, match="dim"):
            AFEBlock(0)
