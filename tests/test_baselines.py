"""Baseline upsamplers (LIIF-style, bicubic features): the NeuralKrigingUpsampler contract."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import scaleeq
from scaleeq.layers.baselines import BicubicFeatureUpsampler, LIIFUpsampler
from scaleeq.models import EDSR


def make(cls):
    torch.manual_seed(0)
    up = cls(6, hidden=16) if cls is BicubicFeatureUpsampler else cls(6, hidden=16, chunk=37)
    with torch.no_grad():
        for p in up.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return up.eval()


UPS = {"liif": make(LIIFUpsampler), "bicubic-feat": make(BicubicFeatureUpsampler)}


@pytest.mark.parametrize("name", list(UPS))
@given(
    h=st.integers(1, 9), w=st.integers(1, 9), rh=st.floats(1, 6), rw=st.floats(1, 6), data=st.data()
)
def test_shapes_and_window_equals_crop(name, h, w, rh, rw, data):
    up = UPS[name]
    feat = torch.randn(2, 6, h, w)
    with torch.no_grad():
        full = up(feat, scale=(rh, rw))
    H, W = int(h * rh + 0.5), int(w * rw + 0.5)
    assert full.shape == (2, 3, H, W)
    wh, ww = data.draw(st.integers(1, H)), data.draw(st.integers(1, W))
    top, left = data.draw(st.integers(0, H - wh)), data.draw(st.integers(0, W - ww))
    with torch.no_grad():
        win = up(feat, scale=(rh, rw), window=(top, left, wh, ww))
    torch.testing.assert_close(
        win, full[:, :, top : top + wh, left : left + ww], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", list(UPS))
def test_per_sample_scales_equal_separate_runs(name):
    up = UPS[name]
    feat = torch.randn(2, 6, 7, 6)
    scales = torch.tensor([[2.0, 2.0], [3.5, 2.5]], dtype=torch.float64)
    with torch.no_grad():
        batch = up(feat, scale=scales, window=(torch.tensor([1, 4]), torch.tensor([0, 3]), 5, 5))
        for i, (t, lf) in enumerate([(1, 0), (4, 3)]):
            alone = up(feat[i : i + 1], scale=tuple(scales[i].tolist()))
            torch.testing.assert_close(
                batch[i : i + 1], alone[:, :, t : t + 5, lf : lf + 5], rtol=1e-5, atol=1e-5
            )


def test_liif_reduces_to_its_ensemble_definition_at_pixel_centres():
    # at x1 every query sits on an LR pixel centre: the prediction of that pixel gets all the weight
    up = UPS["liif"]
    feat = torch.randn(1, 6, 5, 4)
    with torch.no_grad():
        out = up(feat, scale=1.0)
        unfolded = (
            torch.nn.functional.unfold(feat, 3, padding=1).view(1, 54, 5, 4).permute(0, 2, 3, 1)
        )
        z = torch.relu(up.first_feat(unfolded) + up.first_coord(torch.tensor([0.0, 0.0, 1.0, 1.0])))
        for layer in up.hidden:
            z = torch.relu(layer(z))
        expected = up.tail(z).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(UPS))
def test_retrofit_and_tiled_upscale(name):
    torch.manual_seed(0)
    up = (LIIFUpsampler if name == "liif" else BicubicFeatureUpsampler)(16, hidden=16)
    asr = scaleeq.retrofit(EDSR.from_preset("tiny", upscale=2), upsampler=up, skip="bicubic")
    lr = torch.rand(1, 3, 9, 8)
    with torch.no_grad():
        full = asr(lr, scale=2.5)
    torch.testing.assert_close(
        scaleeq.upscale(asr, lr, scale=2.5, max_window_pixels=50), full, rtol=1e-5, atol=1e-5
    )
