"""Tests written for surviving mutants of the mutation-testing run (docs/testing.md).

Each test states an invariant or compares with an independent reference; none takes its
expected value from the code under test.
"""

from __future__ import annotations

import math
import pickle
import re
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import scaleeq.resize as resize_mod
from scaleeq import as_scale_tensor
from scaleeq.geometry import render_plan
from scaleeq.layers.adaptive_conv import AdaptiveConv2d, _auto_impl
from scaleeq.metrics import psnr_y, rgb_to_y, shave, ssim_y
from scaleeq.ops._lean import lean_backward, lean_forward, shifted_sum
from scaleeq.ops.aggregate import _is_exporting, distance_kernel, kriging_aggregate
from scaleeq.ops.coords import axis_queries, nearest_index
from scaleeq.resize import imresize

# -- metrics.py ---------------------------------------------------------------------------------


def test_metric_errors_name_the_argument_and_its_layout():
    good, flat = torch.rand(1, 3, 12, 12), torch.rand(3, 12, 12)
    layout = r"of shape \(B, 3, H, W\)"
    with pytest.raises(ValueError, match=r"^img must be a 4-D tensor " + layout):
        rgb_to_y(flat)
    with pytest.raises(ValueError, match=r"^sr must be a 4-D tensor " + layout):
        psnr_y(flat, good)
    with pytest.raises(ValueError, match=r"^hr must be a 4-D tensor " + layout):
        psnr_y(good, flat)


def test_default_crop_is_the_ceiling_of_each_axis_factor_in_float64():
    hr = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    sr = hr.clone()
    sr[..., 3, 8] += 0.5  # row 3: inside a 4-pixel border, outside a 2-pixel one
    assert math.isinf(psnr_y(sr, hr, scale=(4.0, 2.0)).item())
    assert math.isfinite(psnr_y(sr, hr, scale=(2.0, 4.0)).item())
    sr = hr.clone()
    sr[..., 8, 2] += 0.5  # column 2: ceil(2 + 1e-9) = 3 crops it; a float32 scale (2.0) not
    assert math.isinf(psnr_y(sr, hr, scale=2 + 1e-9).item())
    assert math.isfinite(psnr_y(sr, hr, scale=2.0).item())


def test_ssim_crops_by_scale_or_crop():
    hr = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    sr = hr.clone()
    sr[..., 1, :] = 0.0  # damage inside a 2-pixel border only
    assert ssim_y(sr, hr).item() < 1.0
    assert ssim_y(sr, hr, scale=2).item() == 1.0
    assert ssim_y(sr, hr, crop=2).item() == 1.0


@pytest.mark.parametrize("crop", [(1, 2, 3), [1, 2], (1, 2.5), 2.0, True])
def test_crop_must_be_an_int_or_a_pair_of_ints(crop):
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(TypeError, match="crop must be an int or a pair of ints"):
        psnr_y(x, x, crop=crop)


def test_shave_removes_exactly_the_border():
    img = torch.arange(5 * 9, dtype=torch.float64).view(5, 9)  # 2-D: (..., H, W) with no batch
    torch.testing.assert_close(shave(img, (1, 3)), img[1:4, 3:6], rtol=0, atol=0)
    assert shave(img[None, None], (2, 4)).shape == (1, 1, 1, 1)
    for crop in [(3, 0), (0, 5), (3, 5)]:  # 2 * crop >= side: nothing left
        with pytest.raises(ValueError, match="leaves nothing"):
            shave(img, crop)
    with pytest.raises(ValueError, match="leaves nothing"):
        shave(torch.rand(1, 1, 8, 8), (4, 0))
    with pytest.raises(ValueError, match="leaves nothing"):
        shave(torch.rand(1, 1, 8, 8), (0, 4))


def test_ssim_accepts_exactly_11x11():
    x = torch.rand(1, 3, 11, 11)
    assert ssim_y(x, x).item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_constants_against_scikit_image_on_images_of_different_brightness():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(3)
    hr = 0.1 * torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64)  # dark
    sr = 0.4 + 0.3 * torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64)  # bright
    y = lambda t: (16 + 65.481 * t[0, 0] + 128.553 * t[0, 1] + 24.966 * t[0, 2]).numpy()  # noqa: E731
    ref = metrics.structural_similarity(
        y(sr), y(hr), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim_y(sr, hr).item() == pytest.approx(ref, abs=1e-9)


# -- scale.py -----------------------------------------------------------------------------------


def test_largest_side_is_accepted_and_one_more_doubling_is_not():
    assert as_scale_tensor(float(2**53)).tolist() == [[2.0**53, 2.0**53]]
    plan = render_plan((1, 1), 1, scale=float(2**53), max_pixels=2**200)
    assert plan.out_size == (2**53, 2**53)
    with pytest.raises(
        ValueError,
        match=r"^scale maps input size \(2, 1\) to output size "
        r"\(18014398509481984, 9007199254740992\), beyond the largest supported side 2\*\*53",
    ):
        render_plan((2, 1), 1, scale=float(2**53), max_pixels=2**200)


@pytest.mark.parametrize("scale", [(0.4, 0.5), (0.5, 0.04)])
def test_a_uniform_scale_that_empties_either_side_is_refused(scale):
    with pytest.raises(ValueError, match=r"^scale maps input size \(1, 10\) to output size"):
        render_plan((1, 10), 1, scale=scale)


def test_as_scale_tensor_names_its_argument_and_honours_device():
    with pytest.raises(ValueError, match=r"^factor must be finite and > 0"):
        as_scale_tensor(-1.0, name="factor")
    with pytest.raises(ValueError, match=r"^factor holds 3 per-sample scales"):
        as_scale_tensor(torch.ones(3), 2, name="factor")
    assert as_scale_tensor(2.5, 2, device="meta").device.type == "meta"


# -- resize.py ----------------------------------------------------------------------------------

# MATLAB's bicubic (Keys, a = -0.5) halving, worked out by hand: without antialiasing each output
# sits halfway between two inputs, cubic(0.5) = 0.5625 and cubic(1.5) = -0.0625; with it the
# kernel is 0.5 * cubic(0.5 d) at d = 0.5, 1.5, 2.5, 3.5.
HALVE_PLAIN = [-0.0625, 0.5625, 0.5625, -0.0625]
HALVE_AA = [-0.01171875, -0.03515625, 0.11328125, 0.43359375]
HALVE_AA = HALVE_AA + HALVE_AA[::-1]


def _halve_by_hand(length, taps):
    """The halving matrix's interior rows: output i takes inputs 2i + 1 - k/2 ... 2i + k/2."""
    k, rows, keep = len(taps), [], []
    for i in range(length // 2):
        first = 2 * i + 1 - k // 2
        if first >= 0 and first + k <= length:  # all taps inside: no mirroring
            row = np.zeros(length)
            row[first : first + k] = taps
            rows.append(row)
            keep.append(i)
    return np.array(rows), keep


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("by", ["scale", "size"])
def test_halving_matches_the_hand_worked_matlab_kernel(antialias, by):
    x = torch.rand(24, 24, dtype=torch.float64)
    taps = HALVE_AA if antialias else HALVE_PLAIN
    m, keep = _halve_by_hand(24, taps)
    kw = {"scale": 0.5} if by == "scale" else {"size": (12, 12)}
    y = imresize(x, antialias=antialias, **kw).numpy()
    np.testing.assert_allclose(y[np.ix_(keep, keep)], m @ x.numpy() @ m.T, rtol=0, atol=1e-12)


def test_imresize_argument_checks():
    with pytest.raises(TypeError, match=r"^x must be a tensor of shape"):
        imresize([[1.0]], scale=2)
    with pytest.raises(TypeError, match=r"^x must be a tensor of shape"):
        imresize(torch.rand(4), scale=2)
    with pytest.raises(TypeError, match=r"^x must be a floating-point tensor"):
        imresize(torch.ones(4, 4, dtype=torch.int64), scale=2)
    with pytest.raises(ValueError, match="size must be a pair of ints >= 1"):
        imresize(torch.rand(4, 4), size=(4, 4, 4))
    assert imresize(torch.rand(0, 4, 4), scale=2).shape == (0, 8, 8)  # empty batch, fine
    assert imresize(torch.rand(4, 4), size=(1, 4)).shape == (1, 4)
    assert imresize(torch.rand(4, 4), size=(4, 1)).shape == (4, 1)


def test_imresize_size_guard_boundaries(monkeypatch):
    monkeypatch.setattr(resize_mod, "MAX_RENDER_PIXELS", 2 * 4 * 5)
    imresize(torch.rand(2, 4, 4), size=(4, 5))  # exactly at the limit: allowed
    with pytest.raises(ValueError, match="exceeds the limit"):
        imresize(torch.rand(2, 4, 4), size=(5, 5))
    monkeypatch.setattr(resize_mod, "MAX_RENDER_PIXELS", 10**6)
    # at factor >= 1 each output pixel has 4 + 2 = 6 taps
    monkeypatch.setattr(resize_mod, "MAX_RESIZE_WEIGHTS", 6 * 5)
    imresize(torch.rand(4, 4), size=(5, 5))  # both 5 x 6 weight matrices at the limit
    with pytest.raises(ValueError, match=r"factor 1\.5 along the width\) needs a 6 x 6"):
        imresize(torch.rand(4, 4), size=(5, 6))
    with pytest.raises(ValueError, match=r"factor 1\.5 along the height\) needs a 6 x 6"):
        imresize(torch.rand(4, 4), size=(6, 5))


# -- ops/coords.py ------------------------------------------------------------------------------


def test_nearest_index_rounds_half_to_even_like_python():
    # ties (u = k + 1/2) need an even LR length: 8 -> 1 gives u = 3.5, 10 -> 1 gives u = 4.5
    for lr_len, hr_len in [(7, 7), (7, 14), (7, 3), (7, 35), (4, 1), (8, 1), (10, 1), (12, 3)]:
        index = torch.arange(-3, hr_len + 3)
        got = nearest_index(index, lr_len, torch.tensor(hr_len)).tolist()
        # u = ((2 i + 1) n - N) / (2 N); Python's round() of a Fraction is half-to-even
        want = [round(Fraction((2 * i + 1) * lr_len - hr_len, 2 * hr_len)) for i in index.tolist()]
        assert got == want


def test_axis_queries_dtype_and_device():
    q = axis_queries(4, torch.tensor([8]), torch.tensor([0]), 8, dtype=torch.float32)
    assert q.pos.dtype == q.offset.dtype == torch.float32
    q = axis_queries(4, torch.tensor([8]), torch.tensor([0]), 8, device="meta")
    assert {t.device.type for t in (q.index, q.valid, q.nearest, q.pos, q.offset)} == {"meta"}


@pytest.mark.parametrize(("lr_len", "hr_len"), [(16, 56), (16, 40), (5, 17), (7, 7), (3, 30)])
def test_official_rounding_is_grid_sample_nearest_on_float32_make_coord(lr_len, hr_len):
    # The official (LIIF-style) code: pixel centres -1 + 1/n + (2/n) i in float32, the LR pixel
    # chosen by grid_sample(mode="nearest", align_corners=False), the relative coordinate
    # (query - chosen centre) * n. Reproduced here with torch's own grid_sample.
    def make_coord(n):
        return (torch.tensor(-1 + 1 / n, dtype=torch.float32)
                + torch.tensor(2 / n, dtype=torch.float32)
                * torch.arange(n, dtype=torch.float32))  # fmt: skip

    g = make_coord(hr_len)
    grid = torch.stack([g, torch.zeros_like(g)], dim=-1)[None, None]  # (1, 1, N, 2): x, y
    lr_idx = torch.arange(lr_len, dtype=torch.float32).view(1, 1, 1, lr_len)
    want_nearest = F.grid_sample(lr_idx, grid, mode="nearest", align_corners=False)[0, 0, 0]
    lr_coord = make_coord(lr_len).view(1, 1, 1, lr_len)
    q_coord = F.grid_sample(lr_coord, grid, mode="nearest", align_corners=False)[0, 0, 0]
    want_rel = (g - q_coord) * lr_len
    q = axis_queries(lr_len, torch.tensor([hr_len]), torch.tensor([0]), hr_len, rounding="official")
    assert q.index.tolist() == [list(range(hr_len))] and q.valid.all()
    assert q.nearest[0].tolist() == want_nearest.long().tolist()
    assert torch.equal(2 * q.offset[0], want_rel)
    torch.testing.assert_close(q.pos[0], ((g + 1) * lr_len - 1) / 2, rtol=0, atol=0)
    q64 = axis_queries(lr_len, torch.tensor([hr_len]), torch.tensor([0]), hr_len,
                       rounding="official", dtype=torch.float64)  # fmt: skip
    assert q64.pos.dtype == q64.offset.dtype == torch.float64
    # a halo of 3 queries each side: the chosen LR pixel clamps to the border (int64)
    halo = axis_queries(lr_len, torch.tensor([hr_len]), torch.tensor([-3]), hr_len + 6,
                        rounding="official")  # fmt: skip
    gh = torch.tensor(-1 + 1 / hr_len, dtype=torch.float32) + torch.tensor(
        2 / hr_len, dtype=torch.float32
    ) * torch.arange(-3, hr_len + 3, dtype=torch.float32)
    grid_h = torch.stack([gh, torch.zeros_like(gh)], dim=-1)[None, None]
    want_h = F.grid_sample(
        lr_idx, grid_h, mode="nearest", padding_mode="border", align_corners=False
    )
    assert halo.nearest.dtype == torch.int64
    assert halo.nearest[0].tolist() == want_h[0, 0, 0].long().tolist()


# -- ops/_lean.py -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "needs", [(True, False, False), (False, True, False), (False, False, True)]
)
def test_lean_backward_gives_exactly_the_needed_gradients_in_any_layout(needs):
    g = torch.Generator().manual_seed(5)
    b, grp, c, h, w = 2, 2, 4, 5, 6
    x = torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(
        memory_format=torch.channels_last
    )
    kernel = torch.rand(b, w, h, grp, 9, generator=g, dtype=torch.float64).permute(0, 3, 4, 2, 1)
    dist = torch.rand(b, 9, h, w, generator=g, dtype=torch.float64)
    gy = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, kernel, dist)]
    want = torch.autograd.grad(shifted_sum(*leaves), leaves, gy)  # out-of-place autograd path
    got = lean_backward(gy, x, kernel, dist, needs)
    for need, gt, wt in zip(needs, got, want, strict=True):
        if need:
            torch.testing.assert_close(gt, wt)
        else:
            assert gt is None


# -- ops/aggregate.py ---------------------------------------------------------------------------


def test_distance_kernel_of_a_5x5_window_matches_direct_distances():
    n, big, k, m = 4, 7, 5, 2  # LR 4x4 -> HR 7x7, a 5x5 neighbourhood
    q = axis_queries(n, torch.tensor([big]), torch.tensor([-m]), big + 2 * m, dtype=torch.float64)
    r = distance_kernel(q, q, torch.tensor(0.7, dtype=torch.float64), k)
    assert r.shape == (1, k * k, big, big)

    def centre(i):  # nearest LR pixel of HR index i (clamped), no ties at these sizes
        return min(max(round((i + 0.5) * n / big - 0.5), 0), n - 1)

    for i in range(big):
        for j in range(big):
            py, px = (i + 0.5) * n / big - 0.5, (j + 0.5) * n / big - 0.5
            for t in range(k * k):
                cy, cx = centre(i + t // k - m), centre(j + t % k - m)
                want = math.exp(-((py - cy) ** 2 + (px - cx) ** 2) / (2 * 0.7**2))
                assert abs(r[0, t, i, j].item() - want) < 1e-12


def test_is_exporting_is_true_only_while_torch_export_traces():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(_is_exporting())
            return x + 1

    assert _is_exporting() is False
    torch.export.export(Probe(), (torch.ones(2),), strict=False)
    assert seen and all(s is True for s in seen)


def _aggregate_inputs(dist_grad=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, generator=g).requires_grad_()
    kernel = torch.randn(2, 2, 9, 5, 6, dtype=torch.float64, generator=g).requires_grad_()
    dist = torch.rand(2, 9, 5, 6, dtype=torch.float64, generator=g).requires_grad_(dist_grad)
    return x, kernel, dist


def _reference_grads(x, kernel, dist, gy):
    from scaleeq.ops._reference import aggregate_reference

    leaves = [t.detach().requires_grad_(t.requires_grad) for t in (x, kernel, dist)]
    aggregate_reference(*leaves).backward(gy)
    return [t.grad for t in leaves]


class _FakeTriton:
    """Stands in for ``scaleeq.ops._triton`` (interpreting, so CPU tensors are allowed): runs
    the lean kernels and records what it was handed."""

    def __init__(self):
        self.calls = []

    def interpreting(self):
        return True

    def aggregate_triton_forward(self, x, kernel, dist):
        self.calls.append(("forward", x, kernel, dist))
        return lean_forward(x, kernel, dist)

    def aggregate_triton_backward(self, gy, x, kernel, dist, needs):
        self.calls.append(("backward", gy, x, kernel, dist, needs))
        return lean_backward(gy, x, kernel, dist, needs)


@pytest.mark.parametrize("path", ["function", "custom_op"])
@pytest.mark.parametrize("dist_grad", [True, False])
def test_triton_backend_hands_the_kernels_exactly_their_inputs(monkeypatch, path, dist_grad):
    """backend="triton" runs the Triton forward and backward (eager autograd.Function, or the
    custom op torch.compile sees) with the caller's tensors, a contiguous output gradient and
    the needed-gradient flags; other backends never touch Triton."""
    import scaleeq.ops.aggregate as agg

    fake = _FakeTriton()
    monkeypatch.setattr(agg, "_triton_module", lambda: fake)
    monkeypatch.setattr(agg, "triton_available", lambda: True)
    if path == "custom_op":
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    x, kernel, dist = _aggregate_inputs(dist_grad)
    gy = torch.randn(2, 6, 5, 4, dtype=torch.float64).transpose(1, 3)  # not contiguous
    y = agg.kriging_aggregate(x, kernel, dist, backend="triton")
    assert [c[0] for c in fake.calls] == ["forward"]
    assert all(a is b for a, b in zip(fake.calls[0][1:], (x, kernel, dist), strict=True))
    y.backward(gy)
    assert [c[0] for c in fake.calls] == ["forward", "backward"]
    _, got_gy, *saved, needs = fake.calls[1]
    assert got_gy.is_contiguous() and torch.equal(got_gy, gy)
    assert all(torch.equal(a, b) for a, b in zip(saved, (x, kernel, dist), strict=True))
    assert needs == (True, True, dist_grad)
    want = _reference_grads(x, kernel, dist, gy)
    torch.testing.assert_close(x.grad, want[0])
    torch.testing.assert_close(kernel.grad, want[1])
    assert (dist.grad is None) if not dist_grad else torch.allclose(dist.grad, want[2])
    fake.calls.clear()
    for backend in ("lean", "reference", "auto"):  # CPU tensors: no Triton
        agg.kriging_aggregate(x, kernel, dist, backend=backend).sum().backward()
    assert fake.calls == []


def test_export_and_compile_paths_agree_with_the_eager_function(monkeypatch):
    """The shifted-sum form used while exporting and the custom op used under torch.compile give
    the eager function's values and gradients."""
    import scaleeq.ops.aggregate as agg

    x, kernel, dist = _aggregate_inputs()
    gy = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    want_y = agg.kriging_aggregate(x, kernel, dist).detach()  # the default backend, eager
    want = _reference_grads(x, kernel, dist, gy)
    for name in ("_is_exporting", "is_compiling"):
        with monkeypatch.context() as m:
            m.setattr(agg if name == "_is_exporting" else torch.compiler, name, lambda: True)
            leaves = [t.detach().requires_grad_() for t in (x, kernel, dist)]
            y = agg.kriging_aggregate(*leaves, backend="lean")
            torch.testing.assert_close(y, want_y)
            y.backward(gy)
            for got, ref in zip(leaves, want, strict=True):
                torch.testing.assert_close(got.grad, ref)


def test_eager_calls_do_not_dispatch_through_the_custom_op(monkeypatch):
    import scaleeq.ops.aggregate as agg

    def refuse(*args):
        raise AssertionError("the custom op was called outside torch.compile")

    monkeypatch.setattr(agg, "_aggregate_op", refuse)
    x, kernel, dist = _aggregate_inputs()
    agg.kriging_aggregate(x, kernel, dist, backend="lean").sum().backward()


def _saved_bytes(fn) -> int:
    sizes = []

    def pack(t):
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(sizes)


def test_lean_saves_only_its_inputs_and_reference_is_plain_autograd():
    """The documented memory contract of "lean" (saves its inputs for backward, nothing else),
    and "reference" an independent plain-autograd computation (it saves the unfolded input),
    so that comparing the two is not comparing lean with itself."""
    x, kernel, dist = _aggregate_inputs()
    inputs = sum(t.numel() * t.element_size() for t in (x, kernel, dist))
    assert _saved_bytes(lambda: kriging_aggregate(x, kernel, dist, backend="lean")) == inputs
    unfolded = x.numel() * 9 * x.element_size()
    assert _saved_bytes(lambda: kriging_aggregate(x, kernel, dist, backend="reference")) >= unfolded


def test_resolve_backend_rule(monkeypatch):
    import scaleeq.ops.aggregate as agg

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    fake = _FakeTriton()
    monkeypatch.setattr(agg, "_triton_module", lambda: fake)
    for available in (True, False):
        monkeypatch.setattr(agg, "triton_available", lambda a=available: a)
        assert agg.resolve_backend("auto", cuda) == ("triton" if available else "lean")
        assert agg.resolve_backend("auto", cpu) == "lean"
        assert agg.resolve_backend("lean", cuda) == "lean"
        assert agg.resolve_backend("reference", cpu) == "reference"
    with pytest.raises(
        ValueError, match=r"needs the triton package \(pip install scaleeq\[triton\]\)"
    ):
        agg.resolve_backend("triton", cuda)
    monkeypatch.setattr(agg, "triton_available", lambda: True)
    assert agg.resolve_backend("triton", cuda) == "triton"
    assert agg.resolve_backend("triton", cpu) == "triton"  # the fake interprets
    monkeypatch.setattr(fake, "interpreting", lambda: False)
    assert agg.resolve_backend("triton", cuda) == "triton"
    with pytest.raises(ValueError, match="needs CUDA tensors .* got tensors on cpu"):
        agg.resolve_backend("triton", cpu)


def test_kriging_aggregate_errors_name_argument_and_layout():
    x, kernel, dist = (t.detach() for t in _aggregate_inputs())
    cases = [
        ((x[0], kernel, dist), r"^x must be a 4-D tensor of shape \(B, C, H, W\)"),
        ((x, kernel[0], dist), r"^kernel must be a 5-D tensor of shape \(B, G, k\*k, H, W\)"),
        ((x, kernel, dist[0]), r"^dist must be a 4-D tensor of shape \(B, k\*k, H, W\)"),
        ((x, kernel[:, :, :4], dist[:, :4]), "kernel dim 2 must be k\\*k for an odd k, got 4"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            kriging_aggregate(*args)


# -- layers/adaptive_conv.py --------------------------------------------------------------------


def test_auto_impl_follows_the_documented_cpu_rule():
    cpu, other = torch.device("cpu"), torch.device("meta")
    assert _auto_impl(cpu, 128, 128) == "grouped"  # up to 128 x 128 channels on the CPU
    assert _auto_impl(cpu, 1, 128 * 128) == "grouped"
    assert _auto_impl(cpu, 128, 129) == "scale"
    assert _auto_impl(cpu, 129, 128) == "scale"
    assert _auto_impl(other, 4, 4) == "scale"  # elsewhere: input scaling


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


# -- models/official.py -------------------------------------------------------------------------

# the official names of the backbone entries are scaleeq's own (docstring of
# convert_eqsr_state_dict), so an official-format backbone for any configuration is the state
# dict of an official-mode EQSR built with it (plus the derived index buffer the official model
# stores); the expected configuration is the one the test chose, not one the code computed
OTHER_CONFIGS = [
    dict(in_chans=1, embed_dim=12, depths=(2, 3), num_heads=(3, 2), window_size=4,
         overlap_ratio=0.25, mlp_ratio=3.0, qkv_bias=False, patch_norm=False),
    # first group of depth 1 has no window attention: the window is read off the SA buffer
    dict(in_chans=3, embed_dim=8, depths=(1, 2, 2), num_heads=(2, 4, 1), window_size=6,
         overlap_ratio=0.5, mlp_ratio=1.5, qkv_bias=True, patch_norm=True),
]  # fmt: skip


def _official_backbone(cfg: dict) -> dict[str, torch.Tensor]:
    from scaleeq.models import EQSR

    sd = EQSR(official=True, **cfg).state_dict()
    sd = {k: v for k, v in sd.items() if ".afe." not in k and not k.startswith("upsampler.")}
    w = cfg["window_size"]
    sd["relative_position_index_SA"] = torch.zeros(w * w, w * w, dtype=torch.long)
    return sd


@pytest.mark.parametrize("cfg", OTHER_CONFIGS)
def test_official_configuration_is_read_off_the_shapes_of_other_models(cfg):
    from scaleeq.models.official import _infer_official_config

    got = _infer_official_config(_official_backbone(cfg))
    assert got == {**cfg, "depths": cfg["depths"], "num_heads": cfg["num_heads"]}
    assert isinstance(got["window_size"], int) and isinstance(got["in_chans"], int)


def test_official_window_needs_an_attention_table_or_the_sa_buffer():
    from scaleeq.models.official import _infer_official_config

    sd = _official_backbone(OTHER_CONFIGS[1])  # depth-1 first group: only the buffer is left
    del sd["relative_position_index_SA"]
    with pytest.raises(ValueError, match="cannot infer the window size"):
        _infer_official_config(sd)


@pytest.mark.parametrize(
    "key",
    [
        "layers.0.residual_group.blocks.0.attn.relative_position_bias_table",
        "layers.0.residual_group.overlap_attn.relative_position_bias_table",
    ],
)
def test_a_non_square_position_table_is_named(key):
    from scaleeq.models.official import _infer_official_config

    sd = _official_backbone(OTHER_CONFIGS[0])
    sd[key] = torch.zeros(sd[key].shape[0] + 1, sd[key].shape[1])
    with pytest.raises(ValueError, match=rf"^{re.escape(key)} has \d+ rows, not a square number"):
        _infer_official_config(sd)


def test_a_foreign_state_dict_error_lists_its_first_five_keys():
    from scaleeq.models import load_official_eqsr

    foreign = {f"k{i}": torch.zeros(1) for i in (6, 2, 4, 0, 5, 1, 3)}
    with pytest.raises(ValueError, match=re.escape("starts with ['k0', 'k1', 'k2', 'k3', 'k4']")):
        load_official_eqsr(foreign)


class _NotATensor:  # a pickled object that weights_only loading must refuse
    pass


def test_load_official_eqsr_loads_files_with_weights_only(tmp_path):
    from scaleeq.models import load_official_eqsr

    path = tmp_path / "ckpt.pth"
    torch.save({"conv_first.weight": torch.zeros(1), "payload": _NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_official_eqsr(path)


def _official_upsampler_with_head(width: int) -> dict[str, torch.Tensor]:
    from tests.test_official import FIXTURE

    if not FIXTURE.exists():
        pytest.skip("shared/fixtures/eqsr_official_tiny not beside the checkout")
    sd = {
        k: v for k, v in torch.load(FIXTURE / "state_dict.pt").items() if k.startswith("upsample.")
    }
    sd["upsample.head.0.weight"] = torch.randn(sd["upsample.head.0.bias"].shape[0], width, 1, 1)
    return sd


def test_dsf_conversion_default_prefix_dtype_and_the_smallest_head():
    from scaleeq.models.official import convert_dsf_state_dict

    # one feature channel + 2 offsets + 4 * 2 encodings: the smallest head that still has a feature
    out = convert_dsf_state_dict(_official_upsampler_with_head(1 + 2 + 8), num_freqs=2)
    assert out["head_feat.weight"].shape[1] == 1
    assert out["head_x.weight"].shape[1] == 1 + 2 * 2
    assert all(v.dtype == torch.float32 for v in out.values())  # float32 in, float32 out
    with pytest.raises(ValueError, match="too few for num_freqs=2"):
        convert_dsf_state_dict(_official_upsampler_with_head(2 + 8), num_freqs=2)
