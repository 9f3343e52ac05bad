"""MATLAB-compatible imresize and the evaluation metrics."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import scaleeq.resize as resize_mod
from scaleeq.metrics import eq_s, psnr_y, rgb_to_y, shave, ssim_y
from scaleeq.resize import cubic, imresize, resize_weights

from ._helpers import FUZZ, SCALE_NUMBER, SCALE_WORDS, SIZE_ARG, _uniform, named_or_finite

BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"


class TestImresize:
    def test_cubic_kernel_values(self):
        x = torch.tensor([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5], dtype=torch.float64)
        # by hand from Keys' kernel with a = -0.5
        expected = [1.0, 0.8671875, 0.2265625, 0.0, -0.0703125, -0.0234375, 0.0, 0.0]
        assert cubic(x).tolist() == expected

    def test_first_upscaled_sample_by_hand(self):
        # x2 upscale of [1, 0, 0, 0]: output 1 sits at u = 0.75 (1-based); its taps at 0.75 -
        # (-1, 0, 1, 2) fold by mirroring onto pixels (2, 1, 1, 2): 1.09375 a - 0.09375 b
        y = imresize(torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64), scale=(1, 2))
        assert y.shape == (1, 8)
        assert y[0, 0].item() == pytest.approx(1.09375, abs=1e-15)

    def test_identity_at_scale_one(self):
        x = torch.rand(2, 3, 7, 9)
        assert torch.equal(imresize(x, scale=1.0), x)

    def test_linear_ramp_downscale_by_hand(self):
        # a symmetric, normalised kernel reproduces linear functions: output k sits at 2k + 0.5
        ramp = torch.arange(32, dtype=torch.float64)[None].expand(3, 32)
        y = imresize(ramp, scale=(1, 0.5))
        torch.testing.assert_close(y[0, 3:-3], torch.arange(3, 13, dtype=torch.float64) * 2 + 0.5)

    @given(n=st.integers(1, 40), m=st.integers(1, 80))
    def test_weights_sum_to_one(self, n, m):
        w = resize_weights(n, m, m / n)
        torch.testing.assert_close(
            w.sum(dim=1), torch.ones(m, dtype=torch.float64), rtol=0, atol=1e-12
        )

    def test_constant_stays_constant(self):
        x = torch.full((1, 3, 13, 17), 0.37, dtype=torch.float64)
        for s in (0.25, 1 / 3, 0.5, 1.7, 3.0):
            torch.testing.assert_close(
                imresize(x, scale=s),
                torch.full_like(imresize(x, scale=s), 0.37),
                rtol=0,
                atol=1e-13,
            )

    def test_output_size_rule(self):
        x = torch.rand(1, 3, 10, 7)
        assert imresize(x, scale=0.5).shape[-2:] == (5, 4)  # ceil(3.5) = 4
        assert imresize(x, scale=(1 / 3, 2.5)).shape[-2:] == (4, 18)
        assert imresize(x, size=(4, 9)).shape[-2:] == (4, 9)

    def test_errors(self):
        x = torch.rand(1, 3, 8, 8)
        with pytest.raises(TypeError, match="exactly one of scale and size"):
            imresize(x)
        with pytest.raises(TypeError, match="exactly one of scale and size"):
            imresize(x, scale=2, size=(4, 4))
        with pytest.raises(ValueError, match="scale must be finite and > 0"):
            imresize(x, scale=float("nan"))
        with pytest.raises(ValueError, match="size must be a pair"):
            imresize(x, size=(0, 4))

    @pytest.mark.skipif(
        not BENCH.exists(), reason="shared benchmark images not beside the checkout"
    )
    def test_agrees_with_pil_bicubic_on_benchmarks(self):
        Image = pytest.importorskip("PIL.Image")
        worst = math.inf
        for path in sorted(BENCH.glob("Set5/HR/*.png")):
            im = Image.open(path).convert("RGB")
            a = np.asarray(im, dtype=np.float64) / 255
            for s in (2, 3, 4):
                h, w = (a.shape[0] // s) * s, (a.shape[1] // s) * s
                pil = (
                    np.asarray(
                        im.crop((0, 0, w, h)).resize((w // s, h // s), Image.BICUBIC),
                        dtype=np.float64,
                    )
                    / 255
                )
                ours = imresize(torch.from_numpy(a[:h, :w].transpose(2, 0, 1).copy()), scale=1 / s)
                ours = (ours.clamp(0, 1) * 255).round().numpy().transpose(1, 2, 0) / 255
                # borders excluded: PIL truncates the kernel at the edge, MATLAB mirrors
                mse = ((ours - pil)[2:-2, 2:-2] ** 2).mean()
                worst = min(worst, 10 * math.log10(1 / mse))
        assert worst >= 50


class TestMetrics:
    def test_rgb_to_y_endpoints(self):
        black, white = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
        assert rgb_to_y(black).item() == pytest.approx(16.0)
        assert rgb_to_y(white).item() == pytest.approx(235.0)

    def test_psnr_hand_computed(self):
        hr = torch.full((1, 3, 20, 20), 0.5, dtype=torch.float64)
        d = 0.01
        sr = hr + d  # the luma moves by 219 d on the 0-255 scale
        assert psnr_y(sr, hr).item() == pytest.approx(20 * math.log10(255 / (219 * d)), abs=1e-9)

    def test_crop_follows_scale(self):
        hr = torch.rand(1, 3, 20, 20)
        sr = hr.clone()
        sr[..., :4, :] = 0  # damage only a 4-pixel border
        assert math.isinf(psnr_y(sr, hr, scale=4).item())
        assert math.isfinite(psnr_y(sr, hr, scale=3).item())
        assert math.isinf(psnr_y(sr, hr, scale=3.2).item())  # ceil(3.2) = 4
        assert math.isinf(psnr_y(sr, hr, crop=(4, 0)).item())

    def test_identical_images(self):
        x = torch.rand(2, 3, 16, 16)
        assert torch.isinf(psnr_y(x, x)).all()
        torch.testing.assert_close(ssim_y(x, x), torch.ones(2, dtype=torch.float64))

    def test_ssim_matches_a_direct_numpy_evaluation(self):
        g = torch.Generator().manual_seed(0)
        hr = torch.rand(1, 3, 14, 13, generator=g, dtype=torch.float64)
        sr = (hr + 0.1 * torch.randn(1, 3, 14, 13, generator=g, dtype=torch.float64)).clamp(0, 1)
        x, y = rgb_to_y(sr)[0, 0].numpy(), rgb_to_y(hr)[0, 0].numpy()
        k = np.arange(11) - 5.0
        win = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 1.5**2))
        win /= win.sum()
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        vals = []
        for i in range(x.shape[0] - 10):
            for j in range(x.shape[1] - 10):
                px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
                mx, my = (win * px).sum(), (win * py).sum()
                vx, vy = (win * (px - mx) ** 2).sum(), (win * (py - my) ** 2).sum()
                cxy = (win * (px - mx) * (py - my)).sum()
                vals.append(
                    (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
        assert ssim_y(sr, hr).item() == pytest.approx(float(np.mean(vals)), abs=1e-10)

    def test_ssim_matches_scikit_image(self):
        metrics = pytest.importorskip("skimage.metrics")
        hr = torch.rand(1, 3, 32, 40, dtype=torch.float64)
        sr = (hr + 0.05 * torch.randn_like(hr)).clamp(0, 1)
        ref = metrics.structural_similarity(
            rgb_to_y(sr)[0, 0].numpy(), rgb_to_y(hr)[0, 0].numpy(), gaussian_weights=True,
            sigma=1.5, use_sample_covariance=False, data_range=255,
        )  # fmt: skip
        assert ssim_y(sr, hr).item() == pytest.approx(ref, abs=1e-6)

    def test_eq_s(self):
        def bicubic(lr, size):
            return imresize(lr, size=size)

        flat = torch.full((1, 3, 24, 24), 0.3)
        assert eq_s(bicubic, flat, 2.0).item() > 100  # constant images: both paths agree (to fp32)
        value = eq_s(bicubic, torch.rand(2, 3, 24, 24), 2.0)
        assert value.shape == (2,) and torch.isfinite(value).all() and (value > 10).all()
        with pytest.raises(ValueError, match="scale must be a number > 1"):
            eq_s(bicubic, flat, 1.0)

    def test_errors(self):
        with pytest.raises(ValueError, match="same shape"):
            psnr_y(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
        with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
            rgb_to_y(torch.rand(1, 1, 8, 8))
        with pytest.raises(ValueError, match="leaves nothing"):
            psnr_y(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), crop=4)
        with pytest.raises(ValueError, match="at least 11x11"):
            ssim_y(torch.rand(1, 3, 10, 10), torch.rand(1, 3, 10, 10))


# -- Tests written for surviving mutants of the mutation-testing run (docs/testing.md) ----------
# Each states an invariant or compares with an independent reference; none takes its expected
# value from the code under test.


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


# -- Issue 16's hand-made mutants: wrong-number bugs the suite used to miss ----------------------
# The test states an invariant or compares against an independent reference, so the mutation it
# names fails it.


def test_luma_of_pure_primaries_is_bt601():
    """Permuting the R and B coefficients (or any two) changes these values."""
    primaries = torch.eye(3).view(3, 3, 1, 1)  # pure red, green, blue images
    y = rgb_to_y(primaries).flatten()
    # ITU-R BT.601 studio range, RGB in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B
    expected = torch.tensor([16 + 65.481, 16 + 128.553, 16 + 24.966])
    torch.testing.assert_close(y, expected)
    skimage = pytest.importorskip("skimage.color")  # an independent implementation
    img = torch.rand(1, 3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = skimage.rgb2ycbcr(img[0].permute(1, 2, 0).numpy())[..., 0]
    torch.testing.assert_close(rgb_to_y(img)[0, 0], torch.from_numpy(ref))


# -- Issue 12's reliability promises: imresize: size guard -----------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 1e-9}, r"output size \(1, 1\) from input size \(6, 5\).* 1 x 4000000002 weight"),
        ({"scale": 1e6}, r"output of 3 x 6000000 x 5000000 = .* exceeds the limit"),
        ({"scale": (1.0, 1e8)}, r"output of 3 x 6 x 500000000 = .* exceeds the limit"),
        ({"size": (10**6, 10**6)}, r"output of 3 x 1000000 x 1000000 = .* exceeds the limit"),
        ({"scale": 1e-10}, r"empty output \(0, 0\)"),
    ],
)
def test_imresize_refuses_huge_work_at_once_naming_the_size(kwargs, message):
    """These used to try to allocate tens of GB (scale=1e-9: a 4e9-tap antialiasing kernel)."""
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        imresize(torch.rand(3, 6, 5), **kwargs)
    assert time.perf_counter() - t0 < 1


def test_imresize_guard_counts_leading_dims_and_leaves_ordinary_calls_alone():
    from scaleeq.geometry import MAX_RENDER_PIXELS

    side = 2**13  # 8192 x 8192 = 2**26 pixels: fine once, refused for a batch of 8
    x = torch.empty(8, 1, 1, 1).expand(8, 1, 4, 4)
    with pytest.raises(ValueError, match=r"8 x 8192 x 8192 .* exceeds the limit"):
        imresize(x, size=(side, side))
    assert 8 * side * side > MAX_RENDER_PIXELS >= side * side
    assert imresize(torch.rand(2, 3, 6, 5), scale=0.1).shape == (2, 3, 1, 1)  # tiny but legal
    assert imresize(torch.rand(3, 6, 5), scale=(2.5, 0.5)).shape == (3, 15, 3)


# -- Property-based fuzzing of the public API (issue 12) ----------------------------------------
# For random good and bad argument values a call either raises ValueError / TypeError whose
# message names the argument, or returns a finite output of the documented size; any other
# exception, a silent NaN, a wrong size or a slow example fails. Strategies, settings and checks:
# tests/_helpers.py.


@FUZZ
@given(
    shape=st.sampled_from([(3, 6, 5), (2, 1, 6, 5), (6, 5), (1, 3, 1, 1), (4,), (3, 0, 5)]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64]),
    scale=st.one_of(st.none(), SCALE_NUMBER, st.tuples(SCALE_NUMBER, SCALE_NUMBER)),
    size=st.one_of(st.none(), SIZE_ARG),
)
def test_imresize(shape, dtype, scale, size):
    x = torch.rand(shape).to(dtype)

    def check(out):
        assert out.dtype == x.dtype and out.shape[:-2] == x.shape[:-2]
        h, w = x.shape[-2:]
        if size is not None:
            assert tuple(out.shape[-2:]) == tuple(size)
        else:  # MATLAB's rule: ceil(n * s)
            r_h, r_w = _uniform(scale)
            for n, r, m in ((h, r_h, out.shape[-2]), (w, r_w, out.shape[-1])):
                assert n * r - 1e-6 <= m < n * r + 1 + 1e-6

    named_or_finite(
        lambda: imresize(x, scale=scale, size=size), (*SCALE_WORDS, "x ", "x must", "dtype"), check
    )
