"""The data pipeline: image I/O (load_image, save_image, list_images, check_output, 16-bit PNG)
and the Fig. 4 patch sampler ArbitraryScalePatches (its use in training: tests/test_training.py).
"""

from __future__ import annotations

import math
import struct
import sys
import zlib

import numpy as np
import png
import pytest
import torch
from PIL import Image

from scaleeq.data import ArbitraryScalePatches, check_output, list_images, load_image, save_image
from scaleeq.resize import imresize

# -- Tests written for surviving mutants of data.py (docs/testing.md) ---------------------------
# Image I/O is checked against files written with Pillow / pypng and values computed by hand
# (value / 255, value / 65535, CMYK -> RGB as 255 - C with K = 0); the Fig. 4 patch sampler
# against its documented construction: the HR window is a window of one of the 8 rotations /
# reflections of the source image, the LR is ``imresize`` of the crop that holds it (recomputed
# here from the source image), scales and positions follow the documented rules. None takes its
# expected value from the code under test.


# -- helpers ------------------------------------------------------------------------------------


def coord_image(h: int, w: int) -> torch.Tensor:
    """Channel 0 = row / 255, channel 1 = column / 255: every pixel says where it came from."""
    ys = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w) / 255
    xs = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w) / 255
    return torch.stack([ys, xs, torch.full((h, w), 0.5)])


def dihedral(img: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations / reflections of ``img``, written independently of the sampler."""
    out = []
    for k in range(4):
        r = torch.rot90(img, k, dims=(-2, -1))
        out += [r, r.flip(-1)]
    return out


def locate(src: torch.Tensor, item: dict, crops: list | None = None) -> int:
    """Index (into ``dihedral(src)``) of the transform whose image holds ``item["hr"]`` as a
    window; asserts that the LR is ``imresize`` of the crop around that window (of the size
    ``scale * patch``, with the window at ``(top, left)`` in it). -1: no transform matches.
    The matching crop is appended to ``crops`` if given."""
    hr, lr = item["hr"], item["lr"]
    p = hr.shape[-1]
    ch, cw = (round(float(s) * p) for s in item["scale"])
    top, left = int(item["top"]), int(item["left"])
    assert 0 <= top <= ch - p and 0 <= left <= cw - p
    found = -1
    for k, d in enumerate(dihedral(src)):
        wins = d.unfold(1, p, 1).unfold(2, p, 1)  # (3, nh, nw, p, p)
        hits = (wins == hr[:, None, None]).flatten(3).all(-1).all(0).nonzero().tolist()
        for a, b in hits:
            y, x = a - top, b - left
            if y < 0 or x < 0 or y + ch > d.shape[1] or x + cw > d.shape[2]:
                continue
            crop = d[:, y : y + ch, x : x + cw]
            if torch.allclose(imresize(crop, size=(p, p)).clamp(0, 1), lr, atol=1e-6):
                found = k
                if crops is not None:
                    crops.append(crop)
    return found


def write_png16(path, rows: np.ndarray, *, greyscale=False, alpha=False) -> None:
    h = rows.shape[0]
    w = png.Writer(
        rows.shape[1], h, greyscale=greyscale, alpha=alpha, bitdepth=16
    )  # pypng: the reference writer
    with open(path, "wb") as f:
        w.write(f, rows.reshape(h, -1).astype(np.uint16).tolist())


def same_items(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- ArbitraryScalePatches: the Fig. 4 construction ----------------------------------------------


def test_default_augmentation_uses_all_eight_rotations_and_reflections_consistently():
    # augment defaults to True: flips and transposition give all 8 dihedral transforms, and
    # the LR is always the imresize of the transformed crop that holds the HR window
    src = coord_image(20, 26)
    ds = ArbitraryScalePatches([src], patch=8, scale_range=(1.0, 2.0), samples_per_epoch=48)
    seen = [locate(src, ds[i]) for i in range(len(ds))]
    assert -1 not in seen
    assert sorted(set(seen)) == list(range(8))


def test_without_augment_every_window_is_an_upright_crop_of_a_tall_image():
    # augment=False: no transform; the crop position covers the whole height of a tall image
    # (rows are drawn from the image height, not its width), always inside the image
    src = coord_image(40, 8)
    ds = ArbitraryScalePatches(
        [src], patch=8, scale_range=(1.0, 1.0), augment=False, samples_per_epoch=16
    )
    rows = set()
    for i in range(len(ds)):
        item = ds[i]
        assert locate(src, item) == 0
        rows.add(round(float(item["hr"][0, 0, 0]) * 255))
        assert torch.equal(item["hr"][1], src[1, :8])  # x0 = 0: the crop is the full width
    assert len(rows) > 4 and max(rows) <= 32


def test_crop_is_round_patch_times_scale_and_capped_per_axis_by_that_axis():
    # H crop = round(8 * 3) = 24 fits in the 40 rows; the width (12) caps only the W crop
    ds = ArbitraryScalePatches(
        [coord_image(40, 12)], patch=8, scale_range=(3.0, 3.0), augment=False
    )
    for i in range(4):
        item = ds[i]
        assert item["scale"].dtype == torch.float64
        assert float(item["scale"][0]) == 3.0
        assert float(item["scale"][1]) * 8 <= 12


def test_an_image_exactly_the_patch_size_is_used_whole():
    # min side == patch is allowed; the only crop is the whole image (y0 = x0 = 0)
    img = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    ds = ArbitraryScalePatches([img], patch=8, scale_range=(1.0, 1.0), augment=False)
    for i in range(8):
        item = ds[i]
        assert torch.equal(item["hr"], img)
        assert item["scale"].tolist() == [1.0, 1.0]
        assert int(item["top"]) == 0 and int(item["left"]) == 0


def test_lr_is_clamped_to_the_unit_range():
    # 3-pixel 0/1 blocks make bicubic overshoot (tiny noise keeps windows unique); the LR
    # is imresize(crop) clamped to [0, 1]
    g = torch.Generator().manual_seed(0)
    img = (torch.rand(3, 8, 8, generator=g) > 0.5).float()
    img = img.repeat_interleave(3, 1).repeat_interleave(3, 2)
    img = (img + 0.001 * torch.rand(3, 24, 24, generator=g)).clamp(0, 1)
    ds = ArbitraryScalePatches([img], patch=8, scale_range=(2.0, 2.0), augment=False)
    crops = []
    for i in range(4):
        item = ds[i]
        assert float(item["lr"].min()) >= 0.0 and float(item["lr"].max()) <= 1.0
        assert locate(img, item, crops) == 0
    # the clamp was needed: the unclamped bicubic downscale of these crops leaves [0, 1]
    raw = torch.stack([imresize(c, size=(8, 8)) for c in crops])
    assert float(raw.max()) > 1.0 and float(raw.min()) < 0.0


def _fraction_non_square(per_axis, n=64):
    src = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0))
    ds = ArbitraryScalePatches(
        [src], patch=16, scale_range=(1.0, 3.0), per_axis=per_axis, samples_per_epoch=n
    )
    s = torch.stack([ds[i]["scale"] for i in range(n)])
    return float((s[:, 0] != s[:, 1]).double().mean())


def test_per_axis_probability_default_and_bools():
    # per_axis defaults to False (square scales); True: independent r_h, r_w; a float p:
    # about a fraction p of the samples (square ones also occur when r_w rounds like r_h)
    assert _fraction_non_square(0.5) == pytest.approx(0.5, abs=0.2)
    assert _fraction_non_square(True) > 0.85
    assert _fraction_non_square(False) == 0.0
    ds = ArbitraryScalePatches([torch.rand(3, 40, 40)], patch=8, samples_per_epoch=16)
    assert all(float(ds[i]["scale"][0]) == float(ds[i]["scale"][1]) for i in range(16))


@pytest.mark.parametrize("per_axis", [0.5, True])
def test_samples_do_not_depend_on_the_global_rng(per_axis):
    # sample i is a pure function of (seed, epoch, i): the global torch RNG plays no part
    ds = ArbitraryScalePatches(
        [torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0))],
        patch=16,
        scale_range=(1.0, 3.0),
        per_axis=per_axis,
    )
    with torch.random.fork_rng():
        torch.manual_seed(1)
        a = [ds[i] for i in range(8)]
        torch.manual_seed(2)
        b = [ds[i] for i in range(8)]
    assert all(same_items(x, y) for x, y in zip(a, b, strict=True))


def test_items_follow_the_epoch_and_index_and_default_seed():
    img = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(0))
    ds = ArbitraryScalePatches([img], patch=8, samples_per_epoch=6)
    # a new dataset is at epoch 0; item i is sample(epoch, i), and items differ
    assert all(same_items(ds[i], ds.sample(0, i)) for i in range(6))
    assert not same_items(ds[0], ds[1]) or not same_items(ds[1], ds[2])
    ds.set_epoch(3)
    assert all(same_items(ds[i], ds.sample(3, i)) for i in range(6))
    assert not all(same_items(ds[i], ds.sample(0, i)) for i in range(6))
    # seed defaults to 0
    seeded = ArbitraryScalePatches([img], patch=8, seed=0)
    other = ArbitraryScalePatches([img], patch=8, seed=1)
    fresh = ArbitraryScalePatches([img], patch=8)
    assert all(same_items(fresh[i], seeded[i]) for i in range(4))
    assert not all(same_items(fresh[i], other[i]) for i in range(4))


def test_documented_defaults_patch_48_and_1000_samples():
    ds = ArbitraryScalePatches([torch.rand(3, 60, 60)])
    assert len(ds) == 1000
    item = ds[999]
    assert item["lr"].shape == (3, 48, 48) and item["hr"].shape == (3, 48, 48)
    assert item["top"].dtype == torch.int64 and item["left"].dtype == torch.int64
    with pytest.raises(IndexError, match="index 1000 out of range for 1000 samples"):
        ds[1000]
    with pytest.raises(IndexError):
        ds[-1]


def test_constructor_errors_name_the_argument():
    img = torch.rand(3, 20, 20)
    with pytest.raises(ValueError, match=r"^patch must be an int >= 1, got 0"):
        ArbitraryScalePatches([img], patch=0)
    with pytest.raises(ValueError, match=r"^samples_per_epoch must be an int >= 1, got 0"):
        ArbitraryScalePatches([img], patch=8, samples_per_epoch=0)
    bad = r"^source\[1\] must be a \(3, H, W\) tensor, got "
    with pytest.raises(ValueError, match=bad + r"torch\.Size\(\[4, 20, 20\]\)"):
        ArbitraryScalePatches([img, torch.rand(4, 20, 20)], patch=8)
    with pytest.raises(ValueError, match=bad + r"torch\.Size\(\[3, 20\]\)"):
        ArbitraryScalePatches([img, torch.rand(3, 20)], patch=8)
    with pytest.raises(ValueError, match=bad + r"\(3, 20, 20\)"):  # a numpy array
        ArbitraryScalePatches([img, np.zeros((3, 20, 20))], patch=8)
    with pytest.raises(ValueError, match=bad + "NoneType"):
        ArbitraryScalePatches([img, None], patch=8)
    per_axis = r"^per_axis must be a bool or a probability in \[0, 1\], got 1\.5"
    with pytest.raises(ValueError, match=per_axis):
        ArbitraryScalePatches([img], patch=8, per_axis=1.5)
    # a tensor source keeps no paths
    assert ArbitraryScalePatches([img], patch=20).paths is None


def _write_rgb(path, arr: np.ndarray) -> None:
    Image.fromarray(arr.astype(np.uint8), "RGB").save(path)


def test_folder_source_loads_its_images_lazily_and_checks_them(tmp_path):
    rng = np.random.default_rng(0)
    arrs = [rng.integers(0, 256, (10, 12, 3)) for _ in range(2)] + [rng.integers(0, 256, (8, 8, 3))]
    for i, a in enumerate(arrs):
        _write_rgb(tmp_path / f"{i}.png", a)
    ds = ArbitraryScalePatches(tmp_path, patch=8, scale_range=(1.0, 1.2), samples_per_epoch=12)
    assert ds.paths == [tmp_path / f"{i}.png" for i in range(3)]
    srcs = [torch.from_numpy(a / 255.0).float().permute(2, 0, 1) for a in arrs]
    for i in range(len(ds)):
        item = ds[i]
        assert any(locate(s, item) >= 0 for s in srcs)
    # a file replaced by a smaller one after the check: refused when it is first decoded
    _write_rgb(tmp_path / "small.png", rng.integers(0, 256, (12, 12, 3)))
    ds = ArbitraryScalePatches(tmp_path, patch=8, scale_range=(1.0, 1.2))
    _write_rgb(tmp_path / "small.png", rng.integers(0, 256, (5, 30, 3)))
    with pytest.raises(ValueError, match=r"image of size \(5, 30\) is smaller than the patch 8"):
        for i in range(64):
            ds[i]


def test_folder_check_names_unreadable_files_by_their_error(tmp_path):
    _write_rgb(tmp_path / "ok.png", np.zeros((8, 8, 3)))
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"bad\.png \(unreadable: UnidentifiedImageError\)"):
        ArbitraryScalePatches(tmp_path, patch=8)


def test_list_images_prefers_the_hr_subfolder(tmp_path):
    _write_rgb(tmp_path / "top.png", np.zeros((4, 4, 3)))
    (tmp_path / "HR").mkdir()
    _write_rgb(tmp_path / "HR" / "b.png", np.zeros((4, 4, 3)))
    _write_rgb(tmp_path / "HR" / "a.png", np.zeros((4, 4, 3)))
    assert list_images(tmp_path) == [tmp_path / "HR" / "a.png", tmp_path / "HR" / "b.png"]


# -- Pillow missing ----------------------------------------------------------------------------


def test_missing_pillow_is_an_import_error_that_says_what_to_install(tmp_path, monkeypatch):
    _write_rgb(tmp_path / "a.png", np.zeros((8, 8, 3)))
    monkeypatch.setitem(sys.modules, "PIL", None)  # `from PIL import Image` now fails
    hint = r"needs Pillow: pip install scaleeq\[examples\]$"
    with pytest.raises(ImportError, match="^reading images " + hint):
        load_image(tmp_path / "a.png")
    with pytest.raises(ImportError, match="^reading images " + hint):
        ArbitraryScalePatches(tmp_path, patch=8)
    with pytest.raises(ImportError, match="^writing images " + hint):
        save_image(torch.rand(3, 4, 4), tmp_path / "b.png")


# -- load_image ----------------------------------------------------------------------------------


def _expect(arr: np.ndarray, top: float) -> torch.Tensor:
    t = torch.from_numpy(arr.astype(np.float64) / top)
    if t.ndim == 2:
        t = t[:, :, None].expand(-1, -1, 3)
    return t.permute(2, 0, 1).float()


def test_load_image_eight_bit_modes(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (3, 5)).astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    torch.testing.assert_close(load_image(tmp_path / "l.png"), _expect(gray, 255))
    # LA: alpha dropped, gray replicated
    la = np.stack([gray, 255 - gray], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    torch.testing.assert_close(load_image(tmp_path / "la.png"), _expect(gray, 255))
    # mode 1 (bilevel): 0 or 1
    bits = rng.integers(0, 2, (3, 5)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "one.png")
    assert Image.open(tmp_path / "one.png").mode == "1"
    torch.testing.assert_close(load_image(tmp_path / "one.png"), _expect(bits * 1, 1))
    # RGBA: alpha dropped
    rgba = rng.integers(0, 256, (3, 5, 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    torch.testing.assert_close(load_image(tmp_path / "rgba.png"), _expect(rgba[..., :3], 255))
    # CMYK (K = 0): R, G, B = 255 - C, 255 - M, 255 - Y
    cmyk = rng.integers(0, 256, (3, 5, 4)).astype(np.uint8)
    cmyk[..., 3] = 0
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.tif")
    torch.testing.assert_close(load_image(tmp_path / "cmyk.tif"), _expect(255 - cmyk[..., :3], 255))


def test_load_image_palette_with_and_without_transparency(tmp_path):
    pal = [10, 20, 30, 40, 50, 60, 70, 80, 90, 200, 210, 220]
    idx = np.array([[0, 1, 2], [3, 2, 1]], np.uint8)
    rgb = np.array(pal, np.uint8).reshape(4, 3)[idx]
    for name, trns in (("p.png", None), ("pt.png", 1)):
        im = Image.fromarray(idx, "P")
        im.putpalette(pal)
        if trns is not None:
            im.info["transparency"] = trns
        im.save(tmp_path / name)
        torch.testing.assert_close(load_image(tmp_path / name), _expect(rgb, 255))


def test_load_image_sixteen_bit_gray_and_above_sixteen_bits(tmp_path):
    vals = np.array([[0, 1000, 65535]], np.uint16)
    Image.fromarray(vals).save(tmp_path / "g16.png")
    img = load_image(tmp_path / "g16.png")
    torch.testing.assert_close(img, _expect(vals, 65535))
    assert float(img.max()) == 1.0
    # Pillow's 32-bit "I" mode with a value above 65535: refused (not silently > 1)
    Image.fromarray(np.array([[70000, 5]], np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(ValueError, match=r"i32\.tif'?: integer values above 16 bits"):
        load_image(tmp_path / "i32.tif")


@pytest.mark.parametrize("bad", [-0.5, 1.5, float("nan"), float("inf")])
def test_load_image_float_images_must_lie_in_the_unit_range(tmp_path, bad):
    ok = np.array([[0.0, 0.25, 1.0]], np.float32)
    Image.fromarray(ok).save(tmp_path / "ok.tif")
    torch.testing.assert_close(load_image(tmp_path / "ok.tif"), _expect(ok, 1))
    Image.fromarray(np.array([[0.5, bad, 0.5]], np.float32)).save(tmp_path / "bad.tif")
    with pytest.raises(ValueError, match=r"bad\.tif.*float image values must lie in \[0, 1\]"):
        load_image(tmp_path / "bad.tif")


def test_load_image_refuses_a_sixteen_bit_png_decompression_bomb_like_pillow(tmp_path, monkeypatch):
    # Pillow refuses images of more than 2 * MAX_IMAGE_PIXELS pixels; the pypng path too
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 65536, (5, 5, 3))  # 25 > 20 pixels
    edge = rng.integers(0, 65536, (4, 5, 3))  # 20 pixels: allowed
    write_png16(tmp_path / "big.png", big)
    write_png16(tmp_path / "edge.png", edge)
    _write_rgb(tmp_path / "big8.png", np.zeros((5, 5, 3)))
    with pytest.raises(Image.DecompressionBombError):  # the reference
        Image.open(tmp_path / "big8.png")
    with pytest.raises(ValueError, match=r"big\.png.*decompression bomb"):
        load_image(tmp_path / "big.png")
    _write_rgb(tmp_path / "edge8.png", np.zeros((4, 5, 3)))
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow opens 20 pixels (warns)
        Image.open(tmp_path / "edge8.png").close()
    torch.testing.assert_close(load_image(tmp_path / "edge.png"), _expect(edge, 65535))


# -- save_image / check_output -------------------------------------------------------------------


def test_save_image_errors_name_img_and_its_layout(tmp_path):
    with pytest.raises(ValueError, match=r"^img must be a 3-D tensor of shape \(C, H, W\)"):
        save_image(torch.rand(4, 4), tmp_path / "x.png")
    with pytest.raises(TypeError, match=r"^img must be a torch\.Tensor of shape \(C, H, W\)"):
        save_image(np.zeros((3, 4, 4)), tmp_path / "x.png")
    for shape in ((3, 0, 4), (3, 4, 0)):
        with pytest.raises(ValueError, match=r"^img must have shape \(3, H, W\) or \(1, H, W\)"):
            save_image(torch.rand(shape), tmp_path / "x.png")


@pytest.mark.parametrize("bits", [8, 16])
def test_save_image_one_pixel_high_round_trips(tmp_path, bits):
    # values clamped to [0, 1] and rounded to bits: round(v * (2**bits - 1))
    v = [-0.3, 0.0, 0.2, 0.5, 1.0, 1.7]
    img = torch.tensor(v).reshape(1, 1, 6).expand(3, 1, 6).contiguous()
    top = 2**bits - 1
    want = torch.tensor([round(min(max(x, 0.0), 1.0) * top) / top for x in v])
    back = load_image(save_image(img, tmp_path / "x.png", bits=bits))
    assert back.shape == (3, 1, 6)
    torch.testing.assert_close(back, want.reshape(1, 1, 6).expand(3, 1, 6), atol=1e-7, rtol=0)


def test_save_image_write_failures_name_the_path(tmp_path):
    # a 250-character name is valid, but the temporary file beside it is too long to create
    path = tmp_path / ("n" * 246 + ".png")
    with pytest.raises(ValueError, match=r"^cannot write '.*n{246}\.png': "):
        save_image(torch.rand(3, 4, 4), path)


def test_writable_formats_only(tmp_path):
    # .psd is a format Pillow reads but cannot write; an unknown suffix is refused up front
    with pytest.raises(ValueError, match=r"unknown image format '\.psd'"):
        save_image(torch.rand(3, 4, 4), tmp_path / "x.psd")
    with pytest.raises(ValueError, match=r"unknown image format '\.xyz'"):
        check_output(tmp_path / "x.xyz", 8)
    check_output(tmp_path / "x.png", 16)
    check_output(tmp_path / "x.bmp", 8)


# -- Issue 16's hand-made mutants: wrong-number bugs the suite used to miss ----------------------
# Each states an invariant or compares against an independent reference, so the mutation
# it names fails it.


def test_fig4_crop_size_rounds_instead_of_truncating():
    """patch 10 at r = 1.26 needs a 12.6-pixel crop: round gives 13, truncation 12."""
    imgs = [torch.rand(3, 30, 30, generator=torch.Generator().manual_seed(0))]
    data = ArbitraryScalePatches(imgs, patch=10, scale_range=(1.26, 1.26), augment=False)
    for i in range(3):
        scale = data.sample(0, i)["scale"]
        assert scale.tolist() == [1.3, 1.3]  # crop / patch = 13 / 10
    assert math.floor(10 * 1.26 + 0.5) == 13


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


# -- Issue 12's reliability promises: 16-bit colour PNG --------------------------------------------


# Adam7 passes: (first row, first column, row step, column step)
_ADAM7 = [
    (0, 0, 8, 8),
    (0, 4, 8, 8),
    (4, 0, 8, 4),
    (0, 2, 4, 4),
    (2, 0, 4, 2),
    (0, 1, 2, 2),
    (1, 0, 2, 1),
]


def _png_with_filters(arr: np.ndarray, filters: list[int], interlace: bool = False) -> bytes:
    """An independent, byte-by-byte PNG encoder using the given filter type for each row (the
    filters are computed from the original bytes, as the PNG specification defines them);
    ``interlace``: Adam7, each pass's reduced image filtered on its own."""
    h, w, c = arr.shape
    depth = 8 * arr.dtype.itemsize
    passes = [arr[y0::dy, x0::dx] for y0, x0, dy, dx in _ADAM7] if interlace else [arr]
    out = bytearray()
    for sub in passes:
        if sub.size:
            out += _filtered_scanlines(sub, filters)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, int(interlace))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(out)))
        + chunk(b"IEND", b"")
    )


def _filtered_scanlines(arr: np.ndarray, filters: list[int]) -> bytearray:
    h, w, c = arr.shape
    raw = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    stride, bpp = w * c * arr.dtype.itemsize, c * arr.dtype.itemsize
    rows = [raw[y * stride : (y + 1) * stride] for y in range(h)]
    out = bytearray()
    for y, row in enumerate(rows):
        prev = rows[y - 1] if y else bytes(stride)
        ft = filters[y % len(filters)]
        out.append(ft)
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            cc = prev[i - bpp] if i >= bpp else 0
            if ft == 0:
                pred = 0
            elif ft == 1:
                pred = a
            elif ft == 2:
                pred = b
            elif ft == 3:
                pred = (a + b) // 2
            else:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
            out.append((row[i] - pred) % 256)
    return out


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("channels", [3, 4, 2])
def test_load_image_reads_16_bit_colour_png_at_full_precision_with_every_filter(
    tmp_path, channels, interlace
):
    """Pillow reads these at 8 bits; every filter type (None, Sub, Up, Average, Paeth) used,
    and Adam7 interlacing (13 x 11: every pass, some of them partial)."""
    pytest.importorskip("PIL")
    pytest.importorskip("png")
    from scaleeq.data import load_image

    rng = np.random.default_rng(channels)
    arr = rng.integers(0, 65536, (13, 11, channels)).astype(np.uint16)
    arr[6:] = np.arange(11, dtype=np.uint16)[None, :, None] * 5000 + 17  # smooth rows too
    path = tmp_path / "deep.png"
    path.write_bytes(_png_with_filters(arr, [0, 1, 2, 3, 4], interlace))
    img = load_image(path)
    colour = arr[..., :1] if channels == 2 else arr[..., :3]  # alpha dropped
    expected = torch.from_numpy(colour / 65535.0).permute(2, 0, 1).expand(3, -1, -1)
    torch.testing.assert_close(img, expected.float(), rtol=0, atol=1e-7)


def test_damaged_16_bit_png_is_a_named_error(tmp_path):
    pytest.importorskip("PIL")
    pytest.importorskip("png")
    from scaleeq.data import load_image

    good = _png_with_filters(np.zeros((4, 4, 3), np.uint16), [1])
    data = bytearray(good)
    data[50] ^= 0xFF  # inside the IDAT chunk: its CRC no longer matches
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"cannot read image .*bad\.png.*Checksum error in IDAT"):
        load_image(tmp_path / "bad.png")
    (tmp_path / "short.png").write_bytes(good[:45])  # cut inside the IDAT chunk
    with pytest.raises(ValueError, match=r"cannot read image .*short\.png.*too short"):
        load_image(tmp_path / "short.png")


@pytest.mark.parametrize(("bits", "suffix"), [(8, ".png"), (16, ".png"), (8, ".tiff")])
def test_save_image_round_trips(tmp_path, bits, suffix):
    image = pytest.importorskip("PIL.Image")
    if bits == 16:
        pytest.importorskip("png")
    from scaleeq.data import load_image, save_image

    torch.manual_seed(bits)
    img = torch.rand(3, 5, 7)
    img[0, 0, 0], img[1, 0, 0] = -0.5, 1.5  # clamped
    path = save_image(img, tmp_path / f"x{suffix}", bits=bits)
    back = load_image(path)
    step = 1 / (2**bits - 1)
    assert (back - img.clamp(0, 1)).abs().max() <= step / 2 + 1e-7
    assert back[0, 0, 0] == 0 and back[1, 0, 0] == 1
    assert ((back / step).round() * step - back).abs().max() < 1e-6  # quantised to `bits`
    gray = save_image(img[:1], tmp_path / f"g{suffix}", bits=bits)
    torch.testing.assert_close(load_image(gray), load_image(path)[:1].expand(3, -1, -1))
    if bits == 16:  # Pillow as an independent reader: the high bytes (RGB), all 16 bits (gray)
        values = (img.clamp(0, 1) * 65535).round().permute(1, 2, 0).numpy().astype(np.uint16)
        with image.open(path) as im:
            assert im.mode == "RGB" and (np.asarray(im) == values >> 8).all()
        with image.open(gray) as im:
            assert (np.asarray(im) == values[..., 0]).all()


def test_16_bit_png_without_pypng_names_the_package(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    from scaleeq.data import load_image, save_image

    path = tmp_path / "deep.png"
    path.write_bytes(_png_with_filters(np.zeros((4, 4, 3), np.uint16), [0]))
    monkeypatch.setitem(sys.modules, "png", None)  # `import png` fails
    with pytest.raises(ImportError, match="pip install pypng"):
        save_image(torch.rand(3, 4, 4), tmp_path / "x.png", bits=16)
    with pytest.raises(ImportError, match="pip install pypng"):
        load_image(path)
    eight = save_image(torch.rand(3, 4, 4), tmp_path / "y.png")  # 8 bits: Pillow only
    assert load_image(eight).shape == (3, 4, 4)


def test_save_image_errors_name_the_path(tmp_path):
    pytest.importorskip("PIL")
    from scaleeq.data import save_image

    img = torch.rand(3, 4, 4)
    with pytest.raises(ValueError, match=r"bits=16 is supported for \.png files only.*x\.jpg"):
        save_image(img, tmp_path / "x.jpg", bits=16)
    with pytest.raises(ValueError, match="bits must be 8 or 16, got 12"):
        save_image(img, tmp_path / "x.png", bits=12)
    with pytest.raises(ValueError, match=r"x\.png.*NaN"):
        save_image(img * float("nan"), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"unknown image format '\.xyz'"):
        save_image(img, tmp_path / "x.xyz")
    with pytest.raises(ValueError, match="folder .*nowhere' does not exist"):
        save_image(img, tmp_path / "nowhere" / "x.png")
    with pytest.raises(ValueError, match="must have shape"):
        save_image(torch.rand(2, 4, 4), tmp_path / "x.png")
    with pytest.raises(TypeError, match="floating-point"):
        save_image(torch.zeros(3, 4, 4, dtype=torch.uint8), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
