"""MATLAB-compatible imresize and the evaluation metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scaleeq.metrics import eq_s, psnr_y, rgb_to_y, ssim_y
from scaleeq.resize import cubic, imresize, resize_weights

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
