"""The demo model and the README's main job."""

from __future__ import annotations

import math

import torch

from scaleeq.demo import demo_model, main, synthetic_images, training_batches


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


def test_fig4_batches_come_from_the_librarys_pipeline():
    """Per-sample scales in [1, 4], patch x patch LR inputs and HR windows inside each
    sample's HR crop of round(patch r) pixels; batch after batch (epochs roll over)."""
    gen = torch.Generator().manual_seed(0)
    images = synthetic_images(4, 104, generator=gen)
    batches = training_batches(images, batch=6, patch=24, seed=0)
    seen = [next(batches) for _ in range(3)]
    for b in seen:
        assert b["lr"].shape == (6, 3, 24, 24) and b["hr"].shape == (6, 3, 24, 24)
        scales = b["scale"]
        assert scales.shape == (6, 2) and scales.dtype == torch.float64
        assert bool(((scales >= 1) & (scales <= 4 + 1 / 24)).all())
        crop = (scales * 24).round()
        assert bool((b["top"] + 24 <= crop[:, 0]).all()) and bool(
            (b["left"] + 24 <= crop[:, 1]).all()
        )
    assert len({float(s) for b in seen for s in b["scale"][:, 0]}) > 6  # scales vary


def test_main_job_runs_and_reports_every_scale(tmp_path):
    report = main(["--steps", "2", "--batch", "2", "--json", str(tmp_path / "r.json")])
    assert [r["scale"] for r in report["results"]] == [2.0, 3.0, 4.0, 6.0]
    assert all(
        math.isfinite(r["psnr_model"]) and math.isfinite(r["psnr_bicubic"])
        for r in report["results"]
    )
    assert (tmp_path / "r.json").exists()
