"""The demo model and the README's main job."""

from __future__ import annotations

import math

import torch

from scaleeq.demo import demo_model, main, make_batch, synthetic_images


def test_tiny_model_window_equals_crop_and_starts_as_bicubic():
    torch.manual_seed(0)
    model = demo_model().eval()
    lr = torch.rand(2, 3, 10, 12)
    with torch.no_grad():
        full = model(lr, scale=2.7)
        win = model(lr, scale=2.7, window=(5, 7, 9, 11))
        bic = torch.nn.functional.interpolate(
            lr, size=full.shape[-2:], mode="bicubic", align_corners=False
        )
    assert full.shape == (2, 3, 27, 32)
    torch.testing.assert_close(win, full[:, :, 5:14, 7:18], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full, bic, rtol=1e-5, atol=1e-5)  # zero tail: plain bicubic at init


def test_fig4_batches_have_per_sample_scales_and_windows():
    gen = torch.Generator().manual_seed(0)
    images = synthetic_images(4, 104, generator=gen)
    lr, scales, window, target = make_batch(images, 6, 24, gen)
    assert lr.shape == (6, 3, 24, 24) and target.shape == (6, 3, 24, 24)
    assert scales.shape == (6,) and len(set(scales.tolist())) > 1
    assert bool(((scales >= 1) & (scales <= 4 + 1 / 24)).all())
    top, left, h, w = window
    hr_sizes = (scales * 24).round()
    assert (
        (h, w) == (24, 24)
        and bool((top + 24 <= hr_sizes).all())
        and bool((left + 24 <= hr_sizes).all())
    )


def test_main_job_runs_and_reports_every_scale(tmp_path):
    report = main(["--steps", "2", "--batch", "2", "--json", str(tmp_path / "r.json")])
    assert [r["scale"] for r in report["results"]] == [2.0, 3.0, 4.0, 6.0]
    assert all(
        math.isfinite(r["psnr_model"]) and math.isfinite(r["psnr_bicubic"])
        for r in report["results"]
    )
    assert (tmp_path / "r.json").exists()
