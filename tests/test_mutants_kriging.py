"""Tests written for surviving mutants of layers/kriging.py (docs/testing.md, issue 16).

Each test states an invariant or compares with an independent reference (hand-written
plain-torch / float64 evaluations of the documented formulas, the documented defaults and the
official fixture's README shapes and parameter count); none takes its expected value from the
code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import scaleeq.geometry as geometry_mod
import scaleeq.layers.kriging as kriging_mod
from scaleeq import NeuralKrigingUpsampler
from scaleeq.geometry import render_plan
from scaleeq.layers import KrigingBlock, OffsetEncoding
from scaleeq.layers.kriging import _linear_to_nchw
from scaleeq.ops.aggregate import distance_kernel

from ._helpers import perturbed

# -- _linear_to_nchw: the eager per-sample form and the batched (compile / export) form ---------


@pytest.mark.parametrize("compiling", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
def test_linear_to_nchw_equals_a_1x1_convolution_in_both_branches(
    monkeypatch, compiling, bias, batch
):
    # compiling=True takes the batched branch that torch.compile / torch.export trace: both
    # formulations must equal F.conv2d of the NCHW input, with and without a bias
    monkeypatch.setattr(kriging_mod, "is_compiling", lambda: compiling)
    g = torch.Generator().manual_seed(batch + 2 * bias)
    conv = nn.Conv2d(5, 7, 1, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        if bias:
            conv.bias.copy_(torch.randn(7, generator=g))
    x = torch.randn(batch, 4, 6, 5, generator=g)  # channels-last (B, H, W, C)
    got = _linear_to_nchw(x, conv)
    want = F.conv2d(x.permute(0, 3, 1, 2), conv.weight, conv.bias)
    assert got.shape == (batch, 7, 4, 6) and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# -- devices: the CPU geometry is moved to the feature map's device -----------------------------


def test_whole_render_on_another_device_keeps_everything_there():
    # the meta device stands in for an accelerator: a render mixing CPU geometry (queries,
    # batch index, frequencies) with device tensors would fail
    up = NeuralKrigingUpsampler(4, hidden=16, blocks=1, scale_mlp=True).to("meta")
    out = up(torch.empty(2, 4, 5, 6, device="meta"), scale=(2.0, 1.5))
    assert out.device.type == "meta" and out.shape == (2, 3, 10, 9)


# -- OffsetEncoding ------------------------------------------------------------------------------


def _encoding_reference(u: float, num_freqs: int) -> list[float]:
    """``[u, sin(2^i pi u / 10), cos(2^i pi u / 10)]`` in Python floats (float64)."""
    ang = [2.0**i * math.pi * u / 10 for i in range(num_freqs)]
    return [u] + [math.sin(a) for a in ang] + [math.cos(a) for a in ang]


def test_offset_encoding_is_evaluated_in_float64_with_unit_one_by_default():
    # float32 offsets with large arguments (2^11 pi 37 / 10 ~ 2.4e4): a float32 evaluation of
    # u, of the frequencies or of the angles is off by ~1e-3; float64 agrees to ~1e-11
    offset = torch.tensor([[0.25, -0.4, 37.3], [3.7, -21.9, 0.0]], dtype=torch.float32)
    enc = OffsetEncoding(12)  # default unit: 1
    assert enc.out_features == 25
    got = enc(offset, dtype=torch.float64)
    assert got.shape == (2, 3, 25) and got.dtype == torch.float64
    want = torch.tensor(
        [[_encoding_reference(float(v), 12) for v in row] for row in offset.double()],
        dtype=torch.float64,
    )
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
    # unit scales the offset before encoding, also in float64 (0.3 * a float32 offset is not
    # float32-exact)
    got2 = OffsetEncoding(12, unit=0.3)(offset, dtype=torch.float64)
    want2 = torch.tensor(
        [[_encoding_reference(0.3 * float(v), 12) for v in row] for row in offset.double()],
        dtype=torch.float64,
    )
    torch.testing.assert_close(got2, want2, rtol=0, atol=1e-9)


def test_offset_encoding_without_frequencies_and_its_argument_check():
    # num_freqs=0 is allowed (minimum 0): the encoding is the offset itself
    offset = torch.tensor([[0.1, -0.3]])
    enc = OffsetEncoding(0)
    assert enc.out_features == 1
    torch.testing.assert_close(enc(offset, dtype=torch.float32), offset[..., None])
    with pytest.raises(ValueError, match=r"^num_freqs must be an int >= 0, got -1$"):
        OffsetEncoding(-1)


# -- KrigingBlock --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_kriging_block_defaults():
    # documented defaults: 8 channels per group, a 3x3 neighbourhood, kernel generator of
    # width dim // 4 (64 at width 256, as the official seblock), FFN x2, "lr" attention
    # with a context of width 0, backend "auto"
    blk = KrigingBlock(16)
    assert blk.groups == 2 and blk.kernel_size == 3
    assert blk.kernel_gen[0].weight.shape == (4, 16, 3, 3)
    assert blk.kernel_gen[2].weight.shape == (2 * 9, 4, 1, 1)
    assert blk.ffn[0].weight.shape == (32, 16, 1, 1)
    assert blk.channel_attention == "lr" and blk.backend == "auto"
    assert isinstance(blk.attn, nn.Linear) and blk.attn.weight.shape == (16, 0)
    # the generator has at least one channel when dim // 4 is 0
    assert KrigingBlock(3, group_channels=1).kernel_gen[0].out_channels == 1
    assert KrigingBlock(4, group_channels=4).kernel_gen[0].out_channels == 1
    # no attention: no module at all
    assert KrigingBlock(16, channel_attention="none").attn is None
    with pytest.raises(ValueError, match=r"^group_channels must be an int >= 1, got 0$"):
        KrigingBlock(16, group_channels=0)


def _block_reference(blk: KrigingBlock, z: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """The block (attention "none", no mask) written out in NCHW with plain torch ops."""

    def ln(x, norm):  # LayerNorm over the channels of each pixel, with the module's eps
        mu = x.mean(1, keepdim=True)
        var = x.var(1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + norm.eps) * norm.weight[:, None, None] + norm.bias[
            :, None, None
        ]

    def conv1x1(x, conv):
        return torch.einsum("oc,bchw->bohw", conv.weight.flatten(1), x) + conv.bias[:, None, None]

    y = conv1x1(ln(z, blk.norm1), blk.conv1)
    b, d, h, w = y.shape
    k, g = blk.kernel_size, blk.groups
    kern = blk.kernel_gen(y).view(b, g, 1, k * k, h, w) * dist.view(b, 1, 1, k * k, h, w)
    patches = F.unfold(y, k, padding=k // 2).view(b, g, d // g, k * k, h, w)
    z = z + conv1x1((patches * kern).sum(3).view(b, d, h, w), blk.conv2)
    return z + conv1x1(F.gelu(conv1x1(ln(z, blk.norm2), blk.ffn[0])), blk.ffn[2])


@pytest.mark.parametrize("grad", [False, True])
def test_block_honours_its_layernorm_eps(grad):
    # the fused channels-last block must read eps from its LayerNorm modules (a large eps
    # makes the difference to the functional default 1e-5 visible)
    torch.manual_seed(1)
    blk = perturbed(KrigingBlock(8, group_channels=4, channel_attention="none"), 0.3).eval()
    blk.norm1.eps, blk.norm2.eps = 0.7, 0.4
    z = 0.5 * torch.randn(2, 8, 5, 6)
    dist = torch.rand(2, 9, 5, 6)
    with torch.set_grad_enabled(grad):
        got = blk(z.permute(0, 2, 3, 1).contiguous(), dist, None, None)
        want = _block_reference(blk, z, dist)
    torch.testing.assert_close(got.permute(0, 3, 1, 2), want, rtol=1e-5, atol=1e-5)


def test_the_backend_argument_reaches_every_aggregation(monkeypatch):
    # NeuralKrigingUpsampler(backend=...) builds its blocks with that backend, and each block
    # passes it to the (unchecked) aggregation
    seen = []
    real = kriging_mod.aggregate

    def spy(x, kernel, dist, *, backend="auto"):
        seen.append(backend)
        return real(x, kernel, dist, backend=backend)

    monkeypatch.setattr(kriging_mod, "aggregate", spy)
    up = NeuralKrigingUpsampler(4, hidden=8, blocks=2, backend="reference")
    with torch.no_grad():
        up(torch.randn(1, 4, 3, 3), scale=2.0)
    assert seen == ["reference", "reference"]


# -- NeuralKrigingUpsampler: defaults and argument checks --------------------------------------


def test_upsampler_defaults_match_the_documentation():
    # docs/api.md signature (and the docstring for activation)
    up = NeuralKrigingUpsampler(64)
    assert up.config == {
        "in_channels": 64,
        "out_channels": 3,
        "hidden": 256,
        "blocks": 2,
        "kernel_size": 3,
        "num_freqs": 8,
        "scale_mlp": False,
        "backend": "auto",
        "group_channels": 8,
        "channel_attention": "lr",
        "lengthscale": 1.5,
        "offset_unit": 1.0,
        "rounding": "exact",
        "block_act": False,
        "activation": "gelu",
    }
    assert up.activation == "gelu" and up.encoding.unit == 1.0
    assert up.lengthscale.item() == pytest.approx(1.5, rel=1e-6)
    assert "out_channels=3, hidden=256," in repr(up)
    # parameters counted by hand from the architecture: latent D = 256, 2 blocks, 3x3, 32
    # groups, 17 encoding features (8 frequencies), generator width D / 4, FFN x2, "lr" gate
    c, d, e, g, kh = 64, 256, 17, 32, 64
    block = (
        2 * 2 * d  # two LayerNorms
        + 2 * (d * d + d)  # conv1, conv2
        + (d * kh * 9 + kh)  # 3x3 generator
        + (kh * g * 9 + g * 9)  # generator output: G * k * k
        + (d * 2 * d + 2 * d)  # FFN in
        + (2 * d * d + d)  # FFN out
        + (c * d + d)  # "lr" gate from the LR context
    )
    total = (c * d + d) + 2 * e * d + 1 + 2 * block + (d * 3 + 3)
    assert sum(p.numel() for p in up.parameters()) == total
    assert round(total / 1e6, 3) == 1.183  # docs/retrofit.md: "upsampler added", C = 64


def test_tile_budget_is_the_floor_of_2_to_the_21_over_hidden_at_least_1024():
    up = NeuralKrigingUpsampler(4, hidden=24, blocks=0)
    assert up.default_window_pixels == 87381 and isinstance(up.default_window_pixels, int)
    assert NeuralKrigingUpsampler(4, hidden=2048, blocks=0).default_window_pixels == 1024


@pytest.mark.parametrize(("blocks", "k", "halo"), [(2, 1, 2), (2, 3, 2), (2, 5, 4), (3, 7, 9)])
def test_halo_is_blocks_times_max_k_3_over_2(blocks, k, halo):
    # docs/design.md: a halo of blocks * max(k, 3) // 2 HR pixels (kernel_size 1 is allowed)
    assert NeuralKrigingUpsampler(4, hidden=8, blocks=blocks, kernel_size=k).halo == halo


def test_constructor_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^in_channels must be an int >= 1, got 0$"):
        NeuralKrigingUpsampler(0)
    with pytest.raises(ValueError, match=r"^out_channels must be an int >= 1, got 0$"):
        NeuralKrigingUpsampler(4, 0)
    with pytest.raises(ValueError, match=r"^blocks must be an int >= 0, got -1$"):
        NeuralKrigingUpsampler(4, blocks=-1)
    for bad in (-1, 3.0, 4):
        with pytest.raises(ValueError, match=r"^kernel_size must be an odd int >= 1"):
            NeuralKrigingUpsampler(4, hidden=8, kernel_size=bad)


def test_forward_layout_error_message():
    up = NeuralKrigingUpsampler(4, hidden=8, blocks=1)
    with pytest.raises(
        ValueError,
        match=r"^feat must be a 4-D tensor of shape \(B, C, h, w\), got shape \(4, 6, 6\)$",
    ):
        up(torch.randn(4, 6, 6), scale=2.0)


# -- NeuralKrigingUpsampler.forward --------------------------------------------------------------


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("activation", [None, "relu"])
def test_render_without_blocks_equals_a_hand_written_head_and_tail(activation):
    # blocks=0: out = tail(act(2 z0)), z0 = act(W_f feat[nearest] + b + W_y enc(oy) + W_x
    # enc(ox)), in float64; at scale 3 the queries sit at u = (i - 1) / 3 LR pixels (offsets
    # -1/3, 0, 1/3 are not float32-exact, so the geometry must follow the feature dtype).
    # activation=None: the default, GELU
    kw = {} if activation is None else {"activation": activation}
    up = perturbed(NeuralKrigingUpsampler(3, 2, hidden=8, blocks=0, **kw).double(), 0.3).eval()
    act = _gelu if activation is None else (lambda t: t.clamp(min=0))
    feat = torch.randn(1, 3, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        got = up(feat, scale=3)
    assert got.shape == (1, 2, 6, 9) and got.dtype == torch.float64

    def geometry(i, n):
        u = (i - 1) / 3
        near = min(max(math.floor(u + 0.5), 0), n - 1)
        return near, u - near

    sd = {k: v.detach() for k, v in up.state_dict().items()}
    want = torch.empty(1, 2, 6, 9, dtype=torch.float64)
    for i in range(6):
        ny, oy = geometry(i, 2)
        ey = torch.tensor(_encoding_reference(oy, 8), dtype=torch.float64)
        for j in range(9):
            nx, ox = geometry(j, 3)
            ex = torch.tensor(_encoding_reference(ox, 8), dtype=torch.float64)
            z0 = act(
                sd["head_feat.weight"] @ feat[0, :, ny, nx]
                + sd["head_feat.bias"]
                + sd["head_y.weight"] @ ey
                + sd["head_x.weight"] @ ex
            )
            want[0, :, i, j] = sd["tail.weight"].flatten(1) @ act(2 * z0) + sd["tail.bias"]
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_gradients_flow_through_block_act_and_match_the_no_grad_render():
    # block_act=True / ReLU (the official activations): the render must stay differentiable
    # (ReLU's backward reads its output, which no in-place add may overwrite)
    up = perturbed(
        NeuralKrigingUpsampler(4, hidden=8, blocks=1, block_act=True, activation="relu"), 0.3
    ).eval()
    feat = torch.randn(1, 4, 3, 4, requires_grad=True)
    out = up(feat, scale=2.0)
    out.square().sum().backward()
    assert feat.grad is not None and torch.isfinite(feat.grad).all() and feat.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(up(feat, scale=2.0), out.detach(), rtol=1e-6, atol=1e-6)


def test_kernel_size_5_window_equals_the_crop_of_the_full_render():
    up = perturbed(NeuralKrigingUpsampler(4, hidden=8, blocks=1, kernel_size=5), 0.1).eval()
    feat = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        full = up(feat, scale=2.5)
        win = up(feat, scale=2.5, window=(3, 2, 6, 7))
    assert full.shape == (1, 3, 13, 13)
    torch.testing.assert_close(win, full[:, :, 3:9, 2:9], rtol=1e-5, atol=1e-5)


def test_eca_attention_refuses_windows():
    up = NeuralKrigingUpsampler(4, hidden=8, blocks=1, channel_attention="eca")
    assert not up.window_exact
    with pytest.raises(ValueError, match="channel_attention='eca'"):
        up(torch.randn(1, 4, 4, 4), scale=2.0, window=(0, 0, 4, 4))


@pytest.mark.parametrize("window", [None, (1, 9, 5, 5)])
def test_traced_geometry_renders_like_eager(monkeypatch, window):
    # while torch.compile / export trace, lr_box reads the whole LR map instead of the tight
    # box (geometry.lr_box: "the result is the same"), the halo mask is built unconditionally
    # and the 1x1 products are batched; the window's halo crosses the right border (14)
    up = perturbed(NeuralKrigingUpsampler(4, hidden=8, blocks=2), 0.1).eval()
    feat = torch.randn(2, 4, 6, 7)
    with torch.no_grad():
        eager = up(feat, scale=2.0, window=window)
        monkeypatch.setattr(geometry_mod, "is_compiling", lambda: True)
        monkeypatch.setattr(kriging_mod, "is_compiling", lambda: True)
        traced = up(feat, scale=2.0, window=window)
    torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-5)


def test_scale_mlp_is_a_residual_on_the_rbf_kernel():
    # dist = R + MLP(R): R from ops.distance_kernel, the MLP (1x1, GELU, 1x1) written out
    up = perturbed(NeuralKrigingUpsampler(4, hidden=8, blocks=1, scale_mlp=True), 0.3).eval()
    qy, qx = render_plan((3, 4), 1, scale=2.5).queries(1, dtype=torch.float32)
    r = distance_kernel(qy, qx, up.lengthscale.detach(), 3)
    w1, b1 = up.scale_mlp[0].weight.flatten(1), up.scale_mlp[0].bias
    w2, b2 = up.scale_mlp[2].weight.flatten(1), up.scale_mlp[2].bias
    hidden = _gelu(torch.einsum("oc,bchw->bohw", w1, r) + b1[:, None, None])
    want = r + torch.einsum("oc,bchw->bohw", w2, hidden) + b2[:, None, None]
    with torch.no_grad():
        got = up._distance(qy, qx)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# -- NeuralKrigingUpsampler.official -------------------------------------------------------------


def test_official_configuration_matches_the_official_dsf():
    # shared/fixtures/eqsr_official_tiny: keys.txt shapes and README (C = 24: head input
    # 24 + 2 + 4 * 40 = 186, 256 wide, seblock 64 x 256 x 3 x 3 and 288 = 32 groups x 9,
    # ECA conv (1, 1, 5) without bias, to_rgb 3 x 256; 1,172,174 DSF parameters; initial
    # length-scale 3 half-pixels)
    up = NeuralKrigingUpsampler.official(24)
    assert sum(p.numel() for p in up.parameters()) == 1_172_174
    assert up.head_feat.weight.shape == (256, 24)
    assert up.head_y.weight.shape == up.head_x.weight.shape == (256, 81)
    assert len(up.blocks) == 2
    for blk in up.blocks:
        assert blk.kernel_gen[0].weight.shape == (64, 256, 3, 3)
        assert blk.kernel_gen[2].weight.shape == (288, 64, 1, 1)
        assert blk.attn.weight.shape == (1, 1, 5) and blk.attn.bias is None
        assert blk.backend == "auto"
    assert up.tail.weight.shape == (3, 256, 1, 1)
    assert up.lengthscale.item() == pytest.approx(1.5, rel=1e-6)
    assert up.encoding.unit == 2.0 and up.rounding == "official"
    assert up.block_act and up.activation == "relu" and not up.window_exact
    assert NeuralKrigingUpsampler.official(24, 1).tail.weight.shape == (1, 256, 1, 1)
