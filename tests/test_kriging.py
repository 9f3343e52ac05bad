"""NeuralKrigingUpsampler: shapes, exact windows, equivariance, per-sample scales, tiling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import scaleeq
import scaleeq.layers.kriging_block as block_mod
from scaleeq import NeuralKrigingUpsampler, upscale
from scaleeq.geometry import render_plan
from scaleeq.layers import KrigingBlock, OffsetEncoding
from scaleeq.layers.channel_attention import BlockAttention, LRContextAttention, NoAttention
from scaleeq.layers.latent import linear_to_nchw
from scaleeq.models import convert_dsf_state_dict
from scaleeq.ops import kriging_aggregate
from scaleeq.ops.aggregate import distance_kernel

from ._helpers import (
    FLOAT_ARG,
    FUZZ,
    INT_ARG,
    SCALE_NUMBER,
    SCALE_WORDS,
    SIZE_ARG,
    WINDOW_ARG,
    _check_hw,
    _expected_hw,
    fuzz_kriging_upsampler,
    fuzz_retrofitted_edsr,
    named_or_finite,
    perturbed,
    scale_args,
)

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "eqsr_official_tiny"


def make_upsampler(c=4, **kw) -> NeuralKrigingUpsampler:
    kw = {"hidden": 16, "blocks": 2, **kw}
    up = NeuralKrigingUpsampler(c, **kw)
    with torch.no_grad():  # move off the init so every part of the net matters
        for p in up.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return up.eval()


def round_half_up(v: float) -> int:
    return math.floor(v + 0.5)


UP = make_upsampler()


@given(
    h=st.integers(1, 64),
    w=st.integers(1, 64),
    rh=st.floats(1.0, 30.0),
    rw=st.floats(1.0, 30.0),
)
def test_output_shapes(h, w, rh, rw):
    H, W = round_half_up(h * rh), round_half_up(w * rw)
    feat = torch.randn(1, 4, h, w)
    with torch.no_grad():
        if H * W <= 40_000:
            assert UP(feat, scale=(rh, rw)).shape == (1, 3, H, W)
        # a window at the bottom-right corner of the full grid is always valid
        win = (H - min(H, 5), W - min(W, 7), min(H, 5), min(W, 7))
        assert UP(feat, scale=(rh, rw), window=win).shape == (1, 3, min(H, 5), min(W, 7))


@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    r=st.floats(1.0, 6.0),
    data=st.data(),
)
def test_window_equals_crop_of_full_render(h, w, r, data):
    feat = torch.randn(2, 4, h, w)
    with torch.no_grad():
        full = UP(feat, scale=r)
        H, W = full.shape[-2:]
        wh = data.draw(st.integers(1, H))
        ww = data.draw(st.integers(1, W))
        top = data.draw(st.integers(0, H - wh))
        left = data.draw(st.integers(0, W - ww))
        win = UP(feat, scale=r, window=(top, left, wh, ww))
    torch.testing.assert_close(
        win, full[:, :, top : top + wh, left : left + ww], rtol=1e-5, atol=1e-5
    )


@given(seed=st.integers(0, 10_000))
def test_per_sample_scales_and_windows_equal_separate_runs(seed):
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(3, 4, 9, 8, generator=g)
    scales = 1 + 3 * torch.rand(3, 2, generator=g, dtype=torch.float64)
    # a 6x6 window of each sample's own full grid (the training setup of Fig. 4)
    sizes = [(round_half_up(9 * a), round_half_up(8 * b)) for a, b in scales.tolist()]
    tops = torch.tensor([int(torch.randint(0, H - 5, (), generator=g)) for H, _ in sizes])
    lefts = torch.tensor([int(torch.randint(0, W - 5, (), generator=g)) for _, W in sizes])
    with torch.no_grad():
        batch = UP(feat, scale=scales, window=(tops, lefts, 6, 6))
        for i in range(3):
            alone = UP(feat[i : i + 1], scale=tuple(scales[i].tolist()))
            t, lf = int(tops[i]), int(lefts[i])
            torch.testing.assert_close(
                batch[i : i + 1], alone[:, :, t : t + 6, lf : lf + 6], rtol=1e-5, atol=1e-5
            )


@pytest.mark.parametrize("r", [2, 3, 4])
def test_translation_equivariance_at_integer_scales(r):
    feat = torch.randn(1, 4, 10, 11)
    shifted = torch.roll(feat, shifts=(1, 1), dims=(2, 3))  # same global mean, shifted content
    with torch.no_grad():
        y, ys = UP(feat, scale=r), UP(shifted, scale=r)
    m = UP.halo + r + 1  # away from the image border and the roll seam
    inner = y[:, :, m:-m, m:-m]
    inner_shifted = ys[:, :, m + r : ys.shape[2] - m + r, m + r : ys.shape[3] - m + r]
    torch.testing.assert_close(inner_shifted, inner, rtol=1e-5, atol=1e-5)


def test_scale_changes_output_and_distance_kernel_matters():
    feat = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        a = UP(feat, size=(15, 15))
        b = UP(feat, size=(16, 16))[:, :, :15, :15]
    assert (a - b).abs().max() > 1e-3
    up = make_upsampler()
    with torch.no_grad():
        before = up(feat, scale=2.5)
        up.log_lengthscale.add_(1.0)
        assert (up(feat, scale=2.5) - before).abs().max() > 1e-4


@pytest.mark.parametrize("backend", ["reference", "shifted"])
def test_module_backends_agree_with_gradients(backend):
    up = make_upsampler(backend="shifted")
    ref = NeuralKrigingUpsampler(4, hidden=16, blocks=2, backend=backend)
    ref.load_state_dict(up.state_dict())
    feat = torch.randn(2, 4, 5, 6, requires_grad=True)
    scale = torch.tensor([2.2, 3.1])
    window = (torch.tensor([1, 3]), torch.tensor([0, 2]), 7, 8)
    y, y_ref = up(feat, scale=scale, window=window), ref(feat, scale=scale, window=window)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    gy = torch.randn_like(y)
    params = [feat, up.log_lengthscale, up.blocks[0].kernel_gen[0].weight]
    params_ref = [feat, ref.log_lengthscale, ref.blocks[0].kernel_gen[0].weight]
    for got, want in zip(
        torch.autograd.grad(y, params, gy), torch.autograd.grad(y_ref, params_ref, gy), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert up.log_lengthscale.grad is None  # grad() does not accumulate


def test_gradients_reach_the_lengthscale():
    up = make_upsampler()
    up(torch.randn(1, 4, 5, 5), scale=2.5).square().mean().backward()
    assert up.log_lengthscale.grad is not None and up.log_lengthscale.grad.abs() > 0


def test_scale_mlp_is_identity_at_init():
    up = make_upsampler(scale_mlp=True)
    plain = NeuralKrigingUpsampler(4, hidden=16, blocks=2)
    plain.load_state_dict(
        {k: v for k, v in up.state_dict().items() if not k.startswith("scale_mlp")}
    )
    with torch.no_grad():
        nn.init.zeros_(up.scale_mlp[2].weight)
        nn.init.zeros_(up.scale_mlp[2].bias)
    feat = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(up(feat, scale=3.0), plain(feat, scale=3.0))


class _FeatureModel(nn.Module):
    """A minimal model with the SR-model contract (scaleeq.contracts.SRModel)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.upsampler = make_upsampler()

    def features(self, lr, scale):
        assert scale.shape in ((1, 2), (lr.shape[0], 2))
        return self.body(lr)

    def render(self, feat, *, plan):
        return self.upsampler(feat, plan=plan)


@pytest.mark.parametrize("max_window_pixels", [50, 300, 10_000])
def test_tiled_upscale_equals_full_render(max_window_pixels):
    model = _FeatureModel()
    lr = torch.rand(2, 3, 11, 9)
    with torch.no_grad():
        full = model.upsampler(model.body(lr), scale=3.7)
    tiled = upscale(model, lr, scale=3.7, max_window_pixels=max_window_pixels)
    torch.testing.assert_close(tiled, full, rtol=1e-5, atol=1e-5)
    feat = model.body(lr).detach()
    torch.testing.assert_close(
        upscale(model.upsampler, feat, size=(40, 33), max_window_pixels=max_window_pixels),
        model.upsampler(feat, size=(40, 33)).detach(),
        rtol=1e-5,
        atol=1e-5,
    )


def _block_unfused(blk, z, dist, mask, context):
    """KrigingBlock written out in NCHW with its modules, no fusion (the reference)."""
    y = blk.conv1(blk.norm1(z))
    if mask is not None:
        y = y * mask
    b, _, h, w = y.shape
    kernel = blk.kernel_gen(y).view(b, blk.groups, blk.kernel_size**2, h, w)
    z = z + blk.conv2(kriging_aggregate(y, kernel, dist, backend="reference"))
    f = blk.ffn(blk.norm2(z))
    if blk.channel_attention == "lr":
        f = f * torch.sigmoid(blk.attn(context))[:, :, None, None]
    elif blk.channel_attention == "eca":
        f = f * blk.attn(f.mean(dim=(2, 3))[:, None, :])[:, 0, :, None, None]
    return z + f


@pytest.mark.parametrize("attention", ["lr", "eca", "none"])
@pytest.mark.parametrize("grad", [False, True])
def test_channels_last_block_equals_unfused_nchw_block(attention, grad):
    torch.manual_seed(0)
    blk = KrigingBlock(16, channel_attention=attention, context_dim=5, group_channels=4)
    with torch.no_grad():  # off the init (the "lr" gate starts at zero weights)
        for p in blk.parameters():
            p.add_(0.2 * torch.randn_like(p))
    z = torch.randn(2, 16, 7, 9, requires_grad=grad)
    dist = torch.rand(2, 9, 7, 9)
    mask = (torch.rand(2, 1, 7, 9) > 0.2).float()
    context = torch.randn(2, 5)  # two samples, two different gates
    with torch.set_grad_enabled(grad):
        got = blk(z.permute(0, 2, 3, 1), dist, mask, context).permute(0, 3, 1, 2)
        ref = _block_unfused(blk, z, dist, mask, context)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    if grad:
        gy = torch.randn_like(got)
        params = [z, blk.conv1.weight, blk.ffn[2].weight, blk.ffn[2].bias]
        params += [blk.attn.weight] if attention != "none" else []
        for a, b in zip(
            torch.autograd.grad(got, params, gy),
            torch.autograd.grad(ref, params, gy),
            strict=True,
        ):
            # fp32 weight gradients sum over every position in an order that depends on the
            # thread count (one thread: 1.7e-5 seen on a gradient of 0.07)
            torch.testing.assert_close(a, b, rtol=1e-4, atol=5e-5)


def test_render_is_the_same_with_and_without_autograd():
    feat = torch.randn(2, 4, 5, 6)
    with torch.no_grad():  # in-place fast path
        fast = UP(feat, scale=2.5)
    torch.testing.assert_close(fast, UP(feat, scale=2.5).detach(), rtol=0, atol=1e-6)


def test_upscale_uses_the_upsamplers_default_tile_budget():
    up = NeuralKrigingUpsampler(4, hidden=16, blocks=1).eval()
    assert up.default_window_pixels == 2**21 // 16
    up2 = make_upsampler()
    up2.default_window_pixels = 120  # instance override: tiles of at most 120 pixels
    windows = []
    hook = up2.register_forward_pre_hook(
        lambda m, args, kwargs: windows.append((kwargs["plan"].height, kwargs["plan"].width)),
        with_kwargs=True,
    )
    feat = torch.randn(1, 4, 8, 7)
    out = upscale(up2, feat, size=(30, 25))
    hook.remove()
    assert len(windows) > 1 and all(h * w <= 120 for h, w in windows)
    torch.testing.assert_close(out, up2(feat, size=(30, 25)).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not FIXTURE.exists(), reason="shared/fixtures not beside the checkout")
def test_official_configuration_reproduces_official_dsf():
    sd = torch.load(FIXTURE / "state_dict.pt")
    io = torch.load(FIXTURE / "io.pt")
    up = NeuralKrigingUpsampler.official(24)
    up.load_state_dict(convert_dsf_state_dict(sd))
    up.eval()
    for case, (H, W) in io["meta"]["cases"].items():
        with torch.no_grad():
            out = up(io[case]["feat"], size=(H, W))
        torch.testing.assert_close(out, io[case]["dsf_out"], rtol=0, atol=2e-5)
        assert not up.window_exact
    with pytest.raises(ValueError, match="channel_attention='eca'"):
        up(io["x2"]["feat"], size=(32, 32), window=(0, 0, 8, 8))
    # upscale renders such an upsampler whole
    torch.testing.assert_close(
        upscale(up, io["x2"]["feat"], size=(32, 32), max_window_pixels=64),
        io["x2"]["dsf_out"],
        rtol=0,
        atol=2e-5,
    )


class TestErrors:
    feat = torch.randn(2, 4, 6, 6)

    def test_window_outside(self):
        with pytest.raises(ValueError, match="window .* lies outside the output"):
            UP(self.feat, scale=2.0, window=(10, 0, 5, 5))

    def test_size_and_scale_disagree(self):
        with pytest.raises(ValueError, match="scale and size disagree"):
            UP(self.feat, scale=2.0, size=(13, 12))
        assert UP(self.feat, scale=2.0, size=(12, 12)).shape == (2, 3, 12, 12)

    def test_neither(self):
        with pytest.raises(TypeError, match="give scale"):
            UP(self.feat)

    @pytest.mark.parametrize(
        "bad", [float("nan"), float("inf"), 0.0, -1.0, torch.tensor([2.0, float("nan")])]
    )
    def test_bad_scale(self, bad):
        with pytest.raises(ValueError, match="finite and > 0"):
            UP(self.feat, scale=bad)

    def test_channels_and_rank(self):
        with pytest.raises(ValueError, match="feat must have 4 channels in dim 1, got 5"):
            UP(torch.randn(1, 5, 6, 6), scale=2.0)
        with pytest.raises(ValueError, match="feat must be a 4-D"):
            UP(torch.randn(4, 6, 6), scale=2.0)

    def test_per_sample_sizes_need_a_window(self):
        with pytest.raises(ValueError, match="output sizes differ"):
            UP(self.feat, scale=torch.tensor([2.0, 3.0]))

    def test_batch_mismatch(self):
        with pytest.raises(ValueError, match="3 per-sample scales but the input batch has 2"):
            UP(self.feat, scale=torch.tensor([2.0, 3.0, 4.0]))

    def test_constructor(self):
        with pytest.raises(ValueError, match="backend must be one of"):
            NeuralKrigingUpsampler(4, backend="cupy")
        with pytest.raises(ValueError, match="kernel_size must be an odd"):
            NeuralKrigingUpsampler(4, kernel_size=4)
        with pytest.raises(ValueError, match="divisible by group_channels"):
            NeuralKrigingUpsampler(4, hidden=20)
        with pytest.raises(ValueError, match="channel_attention"):
            NeuralKrigingUpsampler(4, hidden=16, channel_attention="se")  # type: ignore[arg-type]

    def test_upscale_bad_model_and_budget(self):
        with pytest.raises(
            TypeError, match=r"model \(Conv2d\) must be an SR model or an upsampler.*window_exact"
        ):
            upscale(nn.Conv2d(4, 4, 1), self.feat, scale=2.0)
        with pytest.raises(ValueError, match="max_window_pixels"):
            upscale(UP, self.feat, scale=2.0, max_window_pixels=0)


# -- Tests written for surviving mutants of layers/kriging.py (docs/testing.md, issue 16) -------
# Each states an invariant or compares with an independent reference (hand-written plain-torch /
# float64 evaluations of the documented formulas, the documented defaults and the official
# fixture's README shapes and parameter count); none takes its expected value from the code
# under test.


# -- linear_to_nchw: the eager per-sample form and the batched (compile / export) form ---------


@pytest.mark.parametrize("compiling", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
def test_linear_to_nchw_equals_a_1x1_convolution_in_both_branches(
    monkeypatch, compiling, bias, batch
):
    # compiling=True takes the batched branch that torch.compile / torch.export trace: both
    # formulations must equal F.conv2d of the NCHW input, with and without a bias
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)  # the one gate
    g = torch.Generator().manual_seed(batch + 2 * bias)
    conv = nn.Conv2d(5, 7, 1, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        if bias:
            conv.bias.copy_(torch.randn(7, generator=g))
    x = torch.randn(batch, 4, 6, 5, generator=g)  # channels-last (B, H, W, C)
    got = linear_to_nchw(x, conv)
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
    # no attention: a module without parameters (no state-dict keys)
    none = KrigingBlock(16, channel_attention="none")
    assert isinstance(none.attn, NoAttention) and not list(none.attn.parameters())
    assert not any(k.startswith("attn.") for k in none.state_dict())
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
    real = block_mod.aggregate

    def spy(x, kernel, dist, *, backend="auto"):
        seen.append(backend)
        return real(x, kernel, dist, backend=backend)

    monkeypatch.setattr(block_mod, "aggregate", spy)
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
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the one gate
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


# -- Issue 16's hand-made mutants: wrong-number bugs the suite used to miss ----------------------
# Each states an invariant or compares against an independent reference, so the mutation
# it names fails it.


def test_lr_gate_reads_the_mean_of_the_lr_feature_map(monkeypatch):
    torch.manual_seed(0)
    up = NeuralKrigingUpsampler(6, hidden=16, blocks=2)
    with torch.no_grad():  # a live gate (it starts at zero weights)
        for blk in up.blocks:
            blk.attn.weight.normal_()
    seen = []
    original = KrigingBlock.forward

    def spy(self, z, dist, mask, context):
        seen.append(context.detach().clone())
        return original(self, z, dist, mask, context)

    monkeypatch.setattr(KrigingBlock, "forward", spy)
    feat = torch.randn(2, 6, 7, 9) * 3 + torch.arange(6.0).view(1, 6, 1, 1)
    up(feat, scale=2.5)
    up(feat, scale=2.5, window=(3, 4, 6, 5))  # a window sees the same global context
    assert len(seen) == 4
    for ctx in seen:
        torch.testing.assert_close(ctx, feat.mean(dim=(2, 3)))


def test_size_guard_refuses_huge_renders_at_once():
    """A valid but huge call fails fast with the requested size named (it used to hang)."""
    import time

    import scaleeq
    from scaleeq.geometry import render_plan

    up = NeuralKrigingUpsampler(3, hidden=8, blocks=1).eval()
    feat = torch.rand(1, 3, 6, 5)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"1 x 6000000000 x 5000000000 .*exceeds the limit"):
        scaleeq.upscale(up, feat, scale=1e9)
    with pytest.raises(ValueError, match="exceeds the limit"):
        up(feat, scale=1e4)  # a whole render of 6e4 x 5e4 pixels
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ValueError, match="exceeds the limit of 100"):
        render_plan((6, 5), 1, scale=10.0, max_pixels=100)
    # a window of a huge output is fine: the guard is on what one call renders
    assert up(feat, scale=1e4, window=(100, 100, 8, 8)).shape == (1, 3, 8, 8)
    big = scaleeq.upscale(up, feat, scale=20.0, max_window_pixels=1024)  # tiled, under the guard
    assert big.shape == (1, 3, 120, 100)


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


# -- strategies: channel attention and query rounding ----------------------------------------


def test_channel_attention_variants_declare_their_properties():
    table = block_mod.CHANNEL_ATTENTIONS
    assert set(table) == {"lr", "eca", "none"}
    for name, cls in table.items():
        assert issubclass(cls, BlockAttention) and cls.name == name
        assert isinstance(cls.window_exact, bool) and isinstance(cls.needs_context, bool)
    assert table["lr"] is LRContextAttention and table["none"] is NoAttention
    assert [n for n, c in table.items() if not c.window_exact] == ["eca"]
    assert [n for n, c in table.items() if c.needs_context] == ["lr"]
    for name in table:  # the upsampler reads its window_exact off the declarations
        up = NeuralKrigingUpsampler(4, hidden=8, blocks=1, channel_attention=name)
        assert up.attention is table[name] and type(up.blocks[0].attn) is table[name]
        assert up.window_exact is table[name].window_exact
        assert up.channel_attention == up.blocks[0].channel_attention == name


def test_window_exact_follows_a_variants_declaration():
    class WholeOnly(NoAttention):  # a variant that declares itself not window-exact
        name = "whole-only"
        window_exact = False

    up = NeuralKrigingUpsampler(4, hidden=8, blocks=1, channel_attention="none")
    feat = torch.randn(1, 4, 4, 4)
    assert up.window_exact
    up.attention = WholeOnly
    assert not up.window_exact
    with pytest.raises(ValueError, match=r"channel_attention='none' \(WholeOnly\) is not"):
        up(feat, scale=2.0, window=(0, 0, 4, 4))
    assert up(feat, scale=2.0).shape == (1, 3, 8, 8)  # whole renders still work
    blk = KrigingBlock(8, group_channels=4, channel_attention=WholeOnly)  # a class is taken
    assert type(blk.attn) is WholeOnly and blk.channel_attention == "whole-only"


def test_attention_variants_keep_keys_and_seeded_initial_weights():
    # the variants are the layers they replaced (nn.Linear, nn.Conv1d, nothing): the same
    # state-dict keys, shapes and random draws
    torch.manual_seed(3)
    lr = LRContextAttention(16, 5)
    after_lr = torch.rand(())
    torch.manual_seed(3)
    old = nn.Linear(5, 16)
    nn.init.zeros_(old.weight)
    nn.init.zeros_(old.bias)
    assert torch.rand(()) == after_lr
    assert lr.state_dict().keys() == old.state_dict().keys() == {"weight", "bias"}
    from scaleeq.layers.official import OfficialECA

    torch.manual_seed(4)
    eca = OfficialECA(16)
    torch.manual_seed(4)
    old_eca = nn.Conv1d(1, 1, 5, padding=2, bias=False)
    assert eca.state_dict().keys() == old_eca.state_dict().keys() == {"weight"}
    assert torch.equal(eca.weight, old_eca.weight)
    x = torch.randn(2, 1, 16)
    assert torch.equal(eca(x), old_eca(x))
    for attention, keys in (("lr", {"attn.weight", "attn.bias"}), ("eca", {"attn.weight"})):
        sd = KrigingBlock(16, channel_attention=attention, context_dim=5).state_dict()
        assert {k for k in sd if k.startswith("attn.")} == keys


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channel_attention": "se"}, r"^channel_attention must be one of 'lr', 'eca', 'none', "),
        ({"channel_attention": "se", "blocks": 0}, r"^channel_attention must be one of"),
        ({"rounding": "floor"}, r"^rounding must be 'exact' or 'official', got 'floor'$"),
        ({"rounding": None}, r"^rounding must be 'exact' or 'official', got None$"),
    ],
)
def test_unknown_strategy_names_are_refused_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NeuralKrigingUpsampler(4, hidden=8, **kwargs)


def test_rounding_strategies_and_their_names_give_the_same_queries():
    from scaleeq.ops.coords import (
        ROUNDINGS,
        AxisRounding,
        ExactRounding,
        OfficialRounding,
        axis_queries,
    )

    assert dict(ROUNDINGS) == {"exact": ExactRounding(), "official": OfficialRounding()}
    for name, strategy in ROUNDINGS.items():
        assert isinstance(strategy, AxisRounding) and strategy.name == name
        assert strategy.window_exact is True  # placement reads a query's own index only
        a = axis_queries(7, torch.tensor([17, 23]), torch.tensor([-2, 3]), 9, rounding=name)
        b = axis_queries(7, torch.tensor([17, 23]), torch.tensor([-2, 3]), 9, rounding=strategy)
        for x, y in zip(
            (a.index, a.valid, a.nearest, a.pos, a.offset),
            (b.index, b.valid, b.nearest, b.pos, b.offset),
            strict=True,
        ):
            assert torch.equal(x, y)
    plan = render_plan((5, 6), 1, scale=2.7)
    for name, strategy in ROUNDINGS.items():
        by_name, by_strategy = plan.queries(1, rounding=name), plan.queries(1, rounding=strategy)
        assert all(
            torch.equal(p.offset, q.offset) for p, q in zip(by_name, by_strategy, strict=True)
        )
    assert ExactRounding().strided and not OfficialRounding().strided
    with pytest.raises(ValueError, match=r"^rounding='official' reads features at stride 1 only"):
        axis_queries(8, torch.tensor([16]), torch.tensor([0]), 4, rounding="official", stride=2)
    with pytest.raises(ValueError, match=r"^rounding must be 'exact' or 'official', got 'x'$"):
        axis_queries(8, torch.tensor([16]), torch.tensor([0]), 4, rounding="x")


def test_strategy_settings_rebuild_from_the_stored_config():
    # the config keeps the strings as given (files written before the strategies load)
    for kwargs in ({}, {"channel_attention": "eca", "rounding": "official"},
                   {"channel_attention": "none"}):  # fmt: skip
        up = perturbed(NeuralKrigingUpsampler(4, hidden=8, blocks=1, **kwargs), 0.2).eval()
        assert all(isinstance(v, str | int | float | bool) for v in up.config.values())
        again = NeuralKrigingUpsampler(**up.config).eval()
        again.load_state_dict(up.state_dict())
        feat = torch.randn(2, 4, 5, 6)
        with torch.no_grad():
            assert torch.equal(again(feat, scale=2.3), up(feat, scale=2.3))
