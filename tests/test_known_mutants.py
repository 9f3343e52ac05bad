"""Tests for four wrong-number bugs that the suite used to miss (issue 16's hand-made mutants).

Each states an invariant or compares against an independent reference, so the mutation it
names fails it.
"""

from __future__ import annotations

import math

import pytest
import torch

from scaleeq import NeuralKrigingUpsampler
from scaleeq.data import ArbitraryScalePatches
from scaleeq.layers.kriging import KrigingBlock
from scaleeq.metrics import rgb_to_y
from scaleeq.training import train


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


def test_ema_after_one_step_is_d_w0_plus_1_minus_d_w1(tmp_path):
    torch.manual_seed(0)
    model = NeuralKrigingUpsampler(3, hidden=8, blocks=1)

    class Wrap(torch.nn.Module):  # the training call signature on an image "feature map"
        def __init__(self):
            super().__init__()
            self.up = model

        def forward(self, lr, *, scale, window):
            return self.up(lr, scale=scale, window=window)

    net = Wrap()
    w0 = {k: v.detach().clone() for k, v in net.state_dict().items()}
    imgs = [torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    data = ArbitraryScalePatches(imgs, patch=8, samples_per_epoch=4)
    d = 0.9
    train(net, data, steps=1, batch_size=2, lr=1e-2, ema_decay=d, checkpoint=tmp_path / "s.pt",
          progress=False, log=lambda s: None)  # fmt: skip
    w1 = net.state_dict()
    ema = torch.load(tmp_path / "s.pt", weights_only=False)["ema"]
    moved = [k for k in w0 if w0[k].is_floating_point() and not torch.equal(w0[k], w1[k])]
    assert moved, "the step changed no weight"
    for k in moved:
        torch.testing.assert_close(ema[k], d * w0[k] + (1 - d) * w1[k])


def test_fig4_crop_size_rounds_instead_of_truncating():
    """patch 10 at r = 1.26 needs a 12.6-pixel crop: round gives 13, truncation 12."""
    imgs = [torch.rand(3, 30, 30, generator=torch.Generator().manual_seed(0))]
    data = ArbitraryScalePatches(imgs, patch=10, scale_range=(1.26, 1.26), augment=False)
    for i in range(3):
        scale = data.sample(0, i)["scale"]
        assert scale.tolist() == [1.3, 1.3]  # crop / patch = 13 / 10
    assert math.floor(10 * 1.26 + 0.5) == 13


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


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("rgb8", 200 / 255), ("gray8", 100 / 255), ("palette", 60 / 255), ("rgba", 50 / 255),
     ("gray16", 30000 / 65535), ("float", 0.25)],
)  # fmt: skip
def test_load_image_keeps_values_of_every_storage(tmp_path, kind, expected):
    np = pytest.importorskip("numpy")
    image = pytest.importorskip("PIL.Image")
    from scaleeq.data import load_image

    path = tmp_path / ("img.tiff" if kind == "float" else "img.png")
    if kind == "rgb8":
        im = image.fromarray(np.full((4, 5, 3), 200, np.uint8))
    elif kind == "gray8":
        im = image.fromarray(np.full((4, 5), 100, np.uint8))
    elif kind == "palette":
        im = image.new("P", (5, 4), 0)  # every pixel: palette entry 0
        im.putpalette([60, 60, 60] * 256)
    elif kind == "rgba":
        a = np.full((4, 5, 4), 50, np.uint8)
        a[..., 3] = 0  # fully transparent: the colour is still 50
        im = image.fromarray(a)
    elif kind == "gray16":
        im = image.fromarray(np.full((4, 5), 30000, np.uint16))
    else:
        im = image.fromarray(np.full((4, 5), 0.25, np.float32))
    im.save(path)
    img = load_image(path)
    assert img.shape == (3, 4, 5) and img.dtype == torch.float32
    torch.testing.assert_close(img, torch.full((3, 4, 5), expected), rtol=0, atol=1e-6)


def test_load_image_refuses_out_of_range_floats(tmp_path):
    np = pytest.importorskip("numpy")
    image = pytest.importorskip("PIL.Image")
    from scaleeq.data import load_image

    image.fromarray(np.full((4, 5), 3.0, np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(ValueError, match=r"f\.tiff.*\[0, 1\]"):
        load_image(tmp_path / "f.tiff")


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


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_damaged_or_nonfinite_checkpoints_are_refused(tmp_path, suffix):
    pytest.importorskip("safetensors")
    import scaleeq
    from scaleeq.models import EDSR

    torch.manual_seed(0)
    asr = scaleeq.retrofit(
        EDSR.from_preset("tiny"), upsampler=NeuralKrigingUpsampler(16, hidden=16, blocks=1)
    )
    path = tmp_path / f"m{suffix}"
    asr.save(path)
    scaleeq.load(path)  # intact: loads
    if suffix == ".safetensors":  # flip one byte of the last tensor's data
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x10
        path.write_bytes(bytes(data))
        with pytest.raises(ValueError, match="is damaged"):
            scaleeq.load(path)
    with torch.no_grad():
        asr.upsampler.tail.bias[0] = float("nan")
    asr.save(path)
    with pytest.raises(ValueError, match=r"non-finite weights .*upsampler.tail.bias"):
        scaleeq.load(path)
    loaded = scaleeq.load(path, allow_nonfinite=True)
    assert torch.isnan(loaded.upsampler.tail.bias[0])


def test_bad_inputs_and_constructor_arguments_get_named_errors():
    import scaleeq
    from scaleeq import AdaptiveConv2d
    from scaleeq.models import EDSR

    up = NeuralKrigingUpsampler(8, hidden=16, blocks=1)
    asr = scaleeq.retrofit(
        EDSR.from_preset("tiny"), upsampler=NeuralKrigingUpsampler(16, hidden=16, blocks=1)
    )
    with pytest.raises(ValueError, match="batch is empty"):
        up(torch.rand(0, 8, 6, 5), scale=2)
    with pytest.raises(ValueError, match="lr must have 3 channels"):
        asr(torch.rand(1, 4, 6, 5), scale=2)
    for dtype in (torch.float16, torch.float64):
        with pytest.raises(TypeError, match=rf"lr has dtype {dtype}.*weights are torch.float32"):
            asr(torch.rand(1, 3, 6, 5, dtype=dtype), scale=2)
        with pytest.raises(TypeError, match="feat has dtype"):
            up(torch.rand(1, 8, 6, 5, dtype=dtype), scale=2)
    assert asr.double()(torch.rand(1, 3, 6, 5, dtype=torch.float64), scale=2).dtype == torch.float64
    with pytest.raises(ValueError, match="kernel_size must be"):
        AdaptiveConv2d(8, 8, 0)
    with pytest.raises(ValueError, match="stride must be"):
        AdaptiveConv2d(8, 8, 3, stride=0)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        AdaptiveConv2d(8, 8, 3, eps=-1)
    with pytest.raises(ValueError, match="group_channels"):
        NeuralKrigingUpsampler(8, group_channels=0)
    for name, value in (("offset_unit", float("nan")), ("lengthscale", float("inf"))):
        with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
            NeuralKrigingUpsampler(8, **{name: value})


def test_training_fails_before_the_first_step_on_bad_paths_and_data(tmp_path):
    np = pytest.importorskip("numpy")
    image = pytest.importorskip("PIL.Image")

    model = NeuralKrigingUpsampler(3, hidden=8, blocks=1)
    data = ArbitraryScalePatches([torch.rand(3, 30, 30)], patch=8, samples_per_epoch=4)
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="is a directory"):
        train(model, data, steps=1000, batch_size=2, checkpoint=tmp_path, progress=False)
    assert calls == []  # refused before any step
    (tmp_path / "state.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"cannot resume from .*state\.pt.*delete it"):
        train(model, data, steps=1, batch_size=2, checkpoint=tmp_path / "state.pt", progress=False)
    folder = tmp_path / "imgs"
    folder.mkdir()
    image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "ok.png")
    image.fromarray(np.zeros((5, 40, 3), np.uint8)).save(folder / "small.png")
    (folder / "broken.png").write_bytes(b"not an image")
    with pytest.raises(
        ValueError, match=r"2 training image.*broken\.png \(unreadable.*small\.png \(40x5"
    ):
        ArbitraryScalePatches(folder, patch=8)
    with pytest.raises(ValueError, match=r"source images \[1\] are smaller than the patch 8"):
        ArbitraryScalePatches([torch.rand(3, 30, 30), torch.rand(3, 6, 30)], patch=8)
