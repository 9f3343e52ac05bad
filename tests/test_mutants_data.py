"""Tests written for surviving mutants of src/scaleeq/data.py (docs/testing.md).

Image I/O is checked against files written with Pillow / pypng and values computed by hand
(value / 255, value / 65535, CMYK -> RGB as 255 - C with K = 0); the Fig. 4 patch sampler
against its documented construction: the HR window is a window of one of the 8 rotations /
reflections of the source image, the LR is ``imresize`` of the crop that holds it (recomputed
here from the source image), scales and positions follow the documented rules. None takes its
expected value from the code under test.
"""

from __future__ import annotations

import sys

import numpy as np
import png
import pytest
import torch
from PIL import Image

from scaleeq.data import (
    ArbitraryScalePatches,
    check_output,
    list_images,
    load_image,
    save_image,
)
from scaleeq.resize import imresize

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
