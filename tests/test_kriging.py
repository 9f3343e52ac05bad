"""NeuralKrigingUpsampler: shapes, exact windows, equivariance, per-sample scales, tiling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from scaleeq import NeuralKrigingUpsampler, upscale
from scaleeq.layers import KrigingBlock
from scaleeq.models import convert_dsf_state_dict
from scaleeq.ops import kriging_aggregate

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


@pytest.mark.parametrize("backend", ["reference", "lean"])
def test_module_backends_agree_with_gradients(backend):
    up = make_upsampler(backend="lean")
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
