"""SwinIR and EQSR models and their shared Swin/HAT blocks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scaleeq import upscale
from scaleeq.models import EQSR, SwinIR
from scaleeq.models.swin import (
    OverlapCrossAttentionBlock,
    SwinBlock,
    SwinTrunk,
    window_partition,
    window_reverse,
)
from scaleeq.ops.padding import pad_to_multiple

from ._helpers import (
    FEW,
    SCALE_WORDS,
    SIZE_ARG,
    _check_hw,
    _expected_hw,
    fuzz_eqsr,
    named_or_finite,
    perturbed,
    scale_args,
)


def round_half_up(v: float) -> int:
    return math.floor(v + 0.5)


# ----------------------------------------------------------------------------------------------
# blocks against loop references written from the papers' definitions


def naive_window_attention(block: SwinBlock, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Swin block by explicit loops: roll, per window and query, softmax over same-region keys."""
    ws, s = block.window_size, block.shift_size
    attn = block.attn
    nh, c = attn.num_heads, attn.dim
    d = c // nh
    y = block.norm1(x)[0].view(h, w, c)
    # region label of every position in the un-rolled image, then rolled with the features
    ry = torch.tensor([0 if i < h - ws else (1 if i < h - s else 2) for i in range(h)])
    rx = torch.tensor([0 if j < w - ws else (1 if j < w - s else 2) for j in range(w)])
    label = ry[:, None] * 3 + rx[None, :]
    if s:
        y = torch.roll(y, (-s, -s), (0, 1))
    qkv = attn.qkv(y)  # (h, w, 3c)
    table = attn.relative_position_bias_table
    out = torch.zeros(h, w, c)
    for wy in range(0, h, ws):
        for wx in range(0, w, ws):
            cells = [(wy + i, wx + j) for i in range(ws) for j in range(ws)]
            for qy, qx in cells:
                for head in range(nh):
                    q = qkv[qy, qx, head * d : (head + 1) * d] * d**-0.5
                    logits, vals = [], []
                    for ky, kx in cells:
                        if s and label[qy, qx] != label[ky, kx]:
                            continue  # the mask's -100 is exp(-100) ~ 0
                        k = qkv[ky, kx, c + head * d : c + (head + 1) * d]
                        dy, dx = qy - ky + ws - 1, qx - kx + ws - 1
                        logits.append(q @ k + table[dy * (2 * ws - 1) + dx, head])
                        vals.append(qkv[ky, kx, 2 * c + head * d : 2 * c + (head + 1) * d])
                    p = torch.softmax(torch.stack(logits), 0)
                    out[qy, qx, head * d : (head + 1) * d] = p @ torch.stack(vals)
    out = attn.proj(out)
    if s:
        out = torch.roll(out, (s, s), (0, 1))
    x = x + out.reshape(1, h * w, c)
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize("shift", [0, 2])
def test_swin_block_matches_loop_reference(shift):
    block = perturbed(SwinBlock(8, 2, 4, shift_size=shift), 0.2).eval()
    x = torch.randn(1, 8 * 12, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            block(x, (8, 12)), naive_window_attention(block, x, 8, 12), rtol=1e-5, atol=1e-5
        )


def naive_ocab(block: OverlapCrossAttentionBlock, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """OCAB by loops: each query window attends to its enlarged, zero-padded key patch."""
    ws, ows, nh = block.window_size, block.overlap_size, block.num_heads
    c = x.shape[-1]
    d = c // nh
    pad = (ows - ws) // 2
    span = ws + ows - 1
    qkv = block.qkv(block.norm1(x))[0].view(h, w, 3 * c)
    out = torch.zeros(h, w, c)
    for wy in range(0, h, ws):
        for wx in range(0, w, ws):
            keys = [(wy - pad + i, wx - pad + j) for i in range(ows) for j in range(ows)]
            for qy in range(wy, wy + ws):
                for qx in range(wx, wx + ws):
                    for head in range(nh):
                        q = qkv[qy, qx, head * d : (head + 1) * d] * d**-0.5
                        logits, vals = [], []
                        for n, (ky, kx) in enumerate(keys):
                            inside = 0 <= ky < h and 0 <= kx < w
                            k = qkv[ky, kx, c + head * d : c + (head + 1) * d] if inside else 0 * q
                            v = (
                                qkv[ky, kx, 2 * c + head * d : 2 * c + (head + 1) * d]
                                if inside
                                else 0 * q
                            )
                            i, j = divmod(n, ows)  # position inside the key patch
                            dy = i - (qy - wy) + ws - ows + 1
                            dx = j - (qx - wx) + ws - ows + 1
                            idx = (dy * span + dx) % (span * span)
                            logits.append(q @ k + block.relative_position_bias_table[idx, head])
                            vals.append(v)
                        p = torch.softmax(torch.stack(logits), 0)
                        out[qy, qx, head * d : (head + 1) * d] = p @ torch.stack(vals)
    x = x + block.proj(out.reshape(1, h * w, c))
    return x + block.mlp(block.norm2(x))


def test_ocab_matches_loop_reference():
    block = perturbed(OverlapCrossAttentionBlock(8, 2, 4, overlap_ratio=0.5), 0.2).eval()
    x = torch.randn(1, 8 * 4, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            block(x, (8, 4)), naive_ocab(block, x, 8, 4), rtol=1e-5, atol=1e-5
        )


@given(
    b=st.integers(1, 2),
    nh=st.integers(1, 3),
    nw=st.integers(1, 3),
    ws=st.integers(1, 4),
)
def test_window_partition_round_trip(b, nh, nw, ws):
    x = torch.randn(b, nh * ws, nw * ws, 3)
    win = window_partition(x, ws)
    assert win.shape == (b * nh * nw, ws * ws, 3)
    # window 1 of sample 0 is the second window of the first row of windows
    if nw > 1:
        torch.testing.assert_close(win[1], x[0, :ws, ws : 2 * ws].reshape(ws * ws, 3))
    assert torch.equal(window_reverse(win, ws, nh * ws, nw * ws), x)


@pytest.mark.parametrize(("h", "w"), [(5, 6), (1, 7), (3, 2), (8, 8)])
def test_pad_to_multiple(h, w):
    x = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    y = pad_to_multiple(x, 4)
    assert y.shape[-2:] == (-(-h // 4) * 4, -(-w // 4) * 4)
    assert torch.equal(y[..., :h, :w], x)
    if h == 5 and w == 6:  # reflect: row 5 mirrors row 3, column 6 mirrors column 4
        assert torch.equal(y[..., 5, :w], x[..., 3, :])
        assert torch.equal(y[..., :h, 6], x[..., :, 4])
    if h == 1:  # too short to reflect: replicated
        assert torch.equal(y[..., 3, :w], x[..., 0, :])


def test_pad_to_multiple_matches_torch_padding_per_axis():
    """Against F.pad: reflect on an axis whose pad is shorter than it, replicate otherwise."""
    import torch.nn.functional as F

    for h in range(1, 10):
        for w in range(1, 10):
            x = torch.randn(2, 3, h, w)
            ref = x
            for dim, n in ((3, w), (2, h)):
                pad = (-n) % 4
                spec = (0, pad, 0, 0) if dim == 3 else (0, 0, 0, pad)
                ref = F.pad(ref, spec, mode="reflect" if pad < n else "replicate")
            assert torch.equal(pad_to_multiple(x, 4), ref), (h, w)


# ----------------------------------------------------------------------------------------------
# SwinIR

TAILS = [("pixelshuffle", 2), ("pixelshuffle", 3), ("pixelshuffle", 4)]
TAILS += [("pixelshuffledirect", 3), ("nearest+conv", 4)]


@pytest.mark.parametrize(("upsampler", "upscale"), TAILS)
@pytest.mark.parametrize(("h", "w"), [(5, 7), (8, 3)])
def test_swinir_tails_and_odd_sizes(upsampler, upscale, h, w):
    net = SwinIR.from_preset("tiny", upscale=upscale, upsampler=upsampler).eval()
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, h * upscale, w * upscale)
    assert torch.isfinite(y).all()
    # samples are independent
    with torch.no_grad():
        torch.testing.assert_close(net(x[1:]), y[1:], rtol=1e-5, atol=1e-5)


def test_swinir_layout_and_presets():
    net = SwinIR.from_preset("classical", upscale=4)
    assert net.upsampler == "pixelshuffle" and net.window_size == 8 and net.img_range == 1.0
    assert len(net.layers) == 6 and len(net.layers[0].residual_group.blocks) == 6
    assert [b.shift_size for b in net.layers[0].residual_group.blocks] == [0, 4] * 3
    assert net.mean.shape == (1, 3, 1, 1) and net.patch_embed.norm is not None
    assert isinstance(net.conv_before_upsample[1], torch.nn.LeakyReLU)
    # SwinIR-M x4: 11.9M parameters
    assert round(sum(p.numel() for p in net.parameters()) / 1e5) == 119
    light = SwinIR.from_preset("light", upscale=2)
    assert light.upsampler == "pixelshuffledirect" and len(light.layers) == 4
    assert not hasattr(light, "conv_last")


DIV2K_MEAN = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)


@pytest.mark.parametrize("upsampler", ["pixelshuffle", "pixelshuffledirect"])
def test_swinir_normalisation_is_undone(upsampler):
    net = SwinIR.from_preset("tiny", upscale=2, upsampler=upsampler, img_range=255.0).eval()
    last = net.conv_last if upsampler == "pixelshuffle" else net.upsample[0]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        y = net(torch.rand(1, 3, 5, 6))
    torch.testing.assert_close(y, DIV2K_MEAN.expand(1, 3, 10, 12))


def test_swinir_config_rebuilds_and_loads_original_buffers():
    net = perturbed(SwinIR.from_preset("tiny", upscale=2)).eval()
    again = SwinIR(**net.config).eval()
    sd = dict(net.state_dict())
    # checkpoints of the original code also hold derived buffers: accepted and ignored
    sd["layers.0.residual_group.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16)
    sd["layers.0.residual_group.blocks.1.attn_mask"] = torch.zeros(4, 16, 16)
    again.load_state_dict(sd)
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x))
    sd["layers.0.residual_group.blocks.0.attn.something_else"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="something_else"):
        again.load_state_dict(sd)


def test_swinir_gradients_reach_every_parameter():
    net = SwinIR.from_preset("tiny", upscale=2, drop_path_rate=0.0)
    net(torch.rand(1, 3, 6, 6)).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


TRUNK = ["conv_first", "patch_embed", "patch_unembed", "layers", "norm", "conv_after_body"]


@pytest.mark.parametrize(
    ("build", "tail"),
    [
        (lambda: SwinIR.from_preset("tiny", upscale=2), ["conv_before_upsample", "upsample"]),
        (
            lambda: SwinIR.from_preset("tiny", upscale=3, upsampler="pixelshuffledirect"),
            ["upsample"],
        ),
        (lambda: EQSR.from_preset("tiny"), ["upsampler"]),
    ],
    ids=["swinir", "swinir-direct", "eqsr"],
)
def test_the_shared_trunk_registers_its_modules_in_the_official_order(build, tail):
    """The order of registration is the order of a seeded model's initial weights and of its
    state-dict keys: SwinTrunk's builder must keep it (SwinIR and EQSR both build through it)."""
    net = build()
    assert isinstance(net, SwinTrunk)
    assert [n for n, _ in net.named_children()][: len(TRUNK) + len(tail)] == TRUNK + tail
    assert [n for n, _ in net.named_buffers()] == ["mean"] and "mean" not in net.state_dict()


@pytest.mark.parametrize("reentrant", [False, True], ids=["non_reentrant", "reentrant"])
def test_swinir_activation_checkpointing_gives_the_same_loss_and_gradients(reentrant):
    torch.manual_seed(0)
    net = perturbed(SwinIR.from_preset("tiny", upscale=2)).train()
    x, target = torch.rand(2, 3, 6, 7), torch.rand(2, 3, 12, 14)

    def loss_and_grads():
        net.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same drop-path draws in both runs
        saved = []  # what the forward keeps for the backward
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            loss = (net(x) - target).abs().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in net.parameters()], len(saved)

    ref_loss, ref_grads, ref_saved = loss_and_grads()
    assert net.set_grad_checkpointing(use_reentrant=reentrant) == len(net.layers)
    loss, grads, saved = loss_and_grads()
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=0)
    for g, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-6, atol=1e-7)
    assert saved < ref_saved / 2  # the groups' activations were not kept
    net.set_grad_checkpointing(False)
    assert loss_and_grads()[2] == ref_saved


class TestSwinIRErrors:
    def test_constructor(self):
        with pytest.raises(ValueError, match="upsampler must be"):
            SwinIR(upsampler="bilinear")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="nearest\\+conv' needs upscale=4, got 2"):
            SwinIR(upsampler="nearest+conv", upscale=2)
        with pytest.raises(ValueError, match="power of 2 or 3 for a pixel-shuffle tail, got 5"):
            SwinIR(upscale=5)
        with pytest.raises(ValueError, match="num_heads must have 2 items"):
            SwinIR(depths=(2, 2), num_heads=(2,))
        with pytest.raises(ValueError, match="dim=18 must be divisible by num_heads=4"):
            SwinIR(embed_dim=18, depths=(1,), num_heads=(4,))
        with pytest.raises(ValueError, match="resi_connection"):
            SwinIR(resi_connection="2conv")
        with pytest.raises(ValueError, match="preset must be one of"):
            SwinIR.from_preset("huge", upscale=2)

    def test_inputs(self):
        net = SwinIR.from_preset("tiny", upscale=2)
        with pytest.raises(ValueError, match="x must have 3 channels in dim 1, got 1"):
            net(torch.rand(1, 1, 8, 8))
        with pytest.raises(ValueError, match="x must be a 4-D"):
            net(torch.rand(3, 8, 8))
        with pytest.raises(TypeError, match="floating-point"):
            net(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))

    def test_block_sizes(self):
        block = SwinBlock(8, 2, 4)
        with pytest.raises(ValueError, match="multiple of the window size 4 .* got \\(6, 4\\)"):
            block(torch.randn(1, 24, 8), (6, 4))
        with pytest.raises(ValueError, match="L = H \\* W = 16"):
            block(torch.randn(1, 20, 8), (4, 4))


# ----------------------------------------------------------------------------------------------
# EQSR

EQ = perturbed(EQSR.from_preset("tiny")).eval()
LR = torch.rand(2, 3, 7, 9)


@pytest.mark.parametrize("scale", [1.5, 2, 3.7, (2.5, 1.5), 8])
def test_eqsr_shapes_at_scales(scale):
    rh, rw = scale if isinstance(scale, tuple) else (scale, scale)
    with torch.no_grad():
        y = EQ(LR, scale=scale)
        feat = EQ.features(LR, scale)
    assert y.shape == (2, 3, round_half_up(7 * rh), round_half_up(9 * rw))
    assert feat.shape == (2, 16, 7, 9)  # cropped back from the window-padded 8 x 12
    assert torch.isfinite(y).all()


def test_eqsr_size_argument_and_scale_conditioning():
    with torch.no_grad():
        by_size = EQ(LR, size=(20, 30))
        by_scale = EQ(LR, scale=(20 / 7, 30 / 9))
        torch.testing.assert_close(by_size, by_scale)
        # the AFE blocks see the scale, on both axes
        f = EQ.features(LR, 2.0)
        assert (EQ.features(LR, 3.0) - f).abs().max() > 1e-4
        assert (EQ.features(LR, (2.0, 3.0)) - f).abs().max() > 1e-4
        torch.testing.assert_close(EQ.features(LR, torch.tensor([2.0, 2.0])), f)


@given(seed=st.integers(0, 1000))
def test_eqsr_window_equals_crop_of_full_render(seed):
    g = torch.Generator().manual_seed(seed)
    top, left = (int(v) for v in torch.randint(0, 12, (2,), generator=g))
    with torch.no_grad():
        full = EQ(LR, scale=3.7)  # (26, 33)
        win = EQ(LR, scale=3.7, window=(top, left, 14, 21))
    torch.testing.assert_close(
        win, full[:, :, top : top + 14, left : left + 21], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("max_window_pixels", [60, 10_000])
def test_eqsr_tiled_upscale_equals_forward(max_window_pixels):
    with torch.no_grad():
        full = EQ(LR, scale=3.7)
    tiled = upscale(EQ, LR, scale=3.7, max_window_pixels=max_window_pixels)
    torch.testing.assert_close(tiled, full, rtol=1e-5, atol=1e-5)


def test_eqsr_per_sample_scales_with_windows_equal_separate_runs():
    scales = torch.tensor([[1.5, 2.0], [3.7, 2.5]], dtype=torch.float64)
    tops, lefts = torch.tensor([2, 9]), torch.tensor([5, 3])
    with torch.no_grad():
        batch = EQ(LR, scale=scales, window=(tops, lefts, 8, 10))
        for i in range(2):
            alone = EQ(LR[i : i + 1], scale=tuple(scales[i].tolist()))
            t, lf = int(tops[i]), int(lefts[i])
            torch.testing.assert_close(
                batch[i : i + 1], alone[:, :, t : t + 8, lf : lf + 10], rtol=1e-5, atol=1e-5
            )


def test_eqsr_gradients_reach_body_afe_and_upsampler():
    net = perturbed(EQSR.from_preset("tiny")).train()
    net(LR, scale=torch.tensor([2.0, 3.0]), window=(0, 0, 6, 6)).abs().mean().backward()
    group = net.layers[1].residual_group
    watched = {
        "conv_first": net.conv_first.weight,
        "window attention": group.blocks[1].attn.relative_position_bias_table,
        "ocab": group.overlap_attn.relative_position_bias_table,
        "afe conv": group.afe.conv.weight,
        "afe scale mapping": group.afe.conv.to_style.weight,
        "upsampler head": net.upsampler.head_feat.weight,
        "upsampler lengthscale": net.upsampler.log_lengthscale,
    }
    for name, p in watched.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_eqsr_normalisation_is_undone():
    net = EQSR.from_preset("tiny", img_range=255.0).eval()
    with torch.no_grad():
        net.upsampler.tail.weight.zero_()
        net.upsampler.tail.bias.zero_()
        y = net(LR, scale=2.5)
    torch.testing.assert_close(y, DIV2K_MEAN.expand(2, 3, 18, 23))


def test_eqsr_layout_config_and_presets():
    group = EQ.layers[0].residual_group
    assert [b.shift_size for b in group.blocks] == [0, 2]
    assert group.overlap_attn.overlap_size == 6
    again = EQSR(**EQ.config).eval()
    again.load_state_dict(EQ.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again(LR, scale=2.5), EQ(LR, scale=2.5))
    paper = EQSR.from_preset("paper")
    assert paper.window_size == 16 and len(paper.layers) == 6
    assert len(paper.layers[0].residual_group.blocks) == 5  # + AFE = depth 6, then the OCAB
    assert paper.upsampler.hidden == 256


def test_eqsr_official_mode_conditions_on_the_cell_height():
    net = perturbed(EQSR.from_preset("tiny", official=True)).eval()
    assert net.layers[0].residual_group.afe.conv.to_style.in_features == 81
    with torch.no_grad():
        f = net.features(LR, (2.0, 2.0))
        # height cell only: the width factor does not matter, the output height does
        assert torch.equal(net.features(LR, (2.0, 3.0)), f)
        assert (net.features(LR, (3.0, 2.0)) - f).abs().max() > 1e-4
        assert net(LR, scale=2.5).shape == (2, 3, 18, 23)
    with pytest.raises(ValueError, match="channel_attention='eca'"):
        net(LR, scale=2.0, window=(0, 0, 4, 4))


class TestEQSRErrors:
    def test_inputs(self):
        with pytest.raises(ValueError, match="lr must be a 4-D"):
            EQ(torch.rand(3, 7, 9), scale=2.0)
        with pytest.raises(ValueError, match="lr must have 3 channels in dim 1, got 4"):
            EQ.features(torch.rand(1, 4, 7, 9), 2.0)
        with pytest.raises(TypeError, match="lr must be a torch.Tensor"):
            EQ.features([[0.0]], 2.0)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [float("nan"), 0.0, -2.0, torch.tensor([2.0, float("inf")])])
    def test_bad_scale(self, bad):
        with pytest.raises(ValueError, match="finite and > 0"):
            EQ(LR, scale=bad)
        with pytest.raises(ValueError, match="finite and > 0"):
            EQ.features(LR, bad)

    def test_scale_arguments(self):
        with pytest.raises(ValueError, match="3 per-sample scales but the input batch has 2"):
            EQ.features(LR, torch.tensor([2.0, 3.0, 4.0]))
        with pytest.raises(ValueError, match="output sizes differ"):
            EQ(LR, scale=torch.tensor([2.0, 3.0]))
        with pytest.raises(ValueError, match="scale and size disagree"):
            EQ(LR, scale=2.0, size=(15, 18))
        with pytest.raises(TypeError, match="give scale"):
            EQ(LR)
        with pytest.raises(ValueError, match="window .* lies outside the output"):
            EQ(LR, scale=2.0, window=(10, 0, 5, 5))

    def test_constructor(self):
        with pytest.raises(ValueError, match="preset must be one of"):
            EQSR.from_preset("huge")
        with pytest.raises(ValueError, match="depths must be a non-empty sequence of ints >= 1"):
            EQSR(depths=(3, 0), num_heads=(2, 2))
        with pytest.raises(TypeError, match="depths must be a sequence of ints, got 3"):
            EQSR(depths=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="window_size must be an int >= 1, got 0"):
            EQSR(window_size=0)
        with pytest.raises(ValueError, match="img_range must be > 0"):
            EQSR.from_preset("tiny", img_range=0.0)


# -- Property-based fuzzing of the public API (issue 12) ----------------------------------------
# For random good and bad argument values a call either raises ValueError / TypeError whose
# message names the argument, or returns a finite output of the documented size; any other
# exception, a silent NaN, a wrong size or a slow example fails. Strategies, settings and checks:
# tests/_helpers.py.


# shared tiny modules (built once; calls never change them)
@pytest.fixture(scope="module")
def eqsr():
    return fuzz_eqsr()


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
