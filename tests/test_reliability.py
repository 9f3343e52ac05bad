"""Issue 12's remaining reliability promises: imresize's size guard, 16-bit colour PNG I/O,
checkpoint metadata validation and device mismatches (the fuzz suite: tests/test_fuzz.py)."""

from __future__ import annotations

import struct
import sys
import time
import zlib

import numpy as np
import pytest
import torch

from scaleeq.resize import imresize

# --- imresize: size guard -------------------------------------------------------------------


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


# --- 16-bit colour PNG ----------------------------------------------------------------------


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


# --- checkpoint metadata ----------------------------------------------------------------------


def _set(*keys, value):
    def edit(meta):
        *parents, last = keys
        for k in parents:
            meta = meta[k]
        meta[last] = value

    return edit


def _drop(*keys):
    def edit(meta):
        *parents, last = keys
        for k in parents:
            meta = meta[k]
        del meta[last]

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("layout", value="swin"), r"key 'layout' is 'swin', but .* layout 'basicsr'"),
        (_set("layout", value=7), r"key 'layout' must be a str"),
        (_set("upsampler", "config", "hidden", value="8"),
         r"'upsampler.config.hidden' must be an int"),
        (_set("base", "config", "num_feat", value=16.5), r"'base.config.num_feat' must be an int"),
        (_set("base", "config", "res_scale", value=True),
         r"'base.config.res_scale' must not be a bool"),
        (_set("settings", "pixel_range", value="255"),
         r"'settings.pixel_range' must be a finite number"),
        (_set("upsampler", "config", "scale_mlp", value=1),
         r"'upsampler.config.scale_mlp' must be true or false"),
        (_set("upsampler", "config", "hidden", value=0),
         r"'upsampler.config' is invalid: hidden must be"),
        (_set("base", "config", "num_feat", value=-1),
         r"'base.config' is invalid: num_feat must be"),
        (_set("base", "config", "rgb_mean", value=[1, 2]),
         r"'base.config' is invalid: rgb_mean must be"),
        (_set("settings", "skip", value="cubic"),
         r"'settings' cannot rebuild the model: skip must be"),
        (_drop("upsampler", "config", "in_channels"), r"'upsampler.config.in_channels' is missing"),
        (_drop("settings"), r"key 'settings' is missing"),
        (_drop("base", "class"), r"key 'base.class' is missing"),
        (_drop("base", "config", "num_block"),
         r"missing and took their defaults: \['base.config.num_block'\]"),
        (_set("extra", value=1), r"key 'extra' is not part of the format"),
        (_set("upsampler", "config", "bogus", value=1),
         r"'upsampler.config.bogus' is not an argument"),
        (_set("settings", "upsampler", value=None), r"'settings.upsampler' is not an argument"),
        (_set("upsampler", "class", value="Foo"),
         r"'upsampler.class': unsupported upsampler 'Foo'"),
        (_set("settings", value=[1]), r"key 'settings' must be a dict"),
        (_set("sha256", value=5), r"key 'sha256' must be a str"),
    ],
)  # fmt: skip
def test_edited_checkpoint_metadata_is_a_value_error_naming_the_key(tmp_path, edit, message):
    """These used to load silently (layout), or fail with TypeError / KeyError / RuntimeError
    from inside the constructors, or with a message that did not say which key was wrong."""
    import scaleeq
    from scaleeq import NeuralKrigingUpsampler
    from scaleeq.models import EDSR

    torch.manual_seed(0)
    asr = scaleeq.retrofit(
        EDSR.from_preset("tiny", upscale=2),
        upsampler=NeuralKrigingUpsampler(16, hidden=8, blocks=1),
    )
    path = tmp_path / "m.pt"
    asr.save(path)
    scaleeq.load(path)  # intact: loads
    payload = torch.load(path, weights_only=True)
    edit(payload["scaleeq"])
    torch.save(payload, path)
    with pytest.raises(ValueError, match=message):
        scaleeq.load(path)


def test_edited_safetensors_metadata_is_checked_too(tmp_path):
    pytest.importorskip("safetensors")
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    import scaleeq
    from scaleeq import NeuralKrigingUpsampler
    from scaleeq.models import EDSR

    asr = scaleeq.retrofit(
        EDSR.from_preset("tiny", upscale=2),
        upsampler=NeuralKrigingUpsampler(16, hidden=8, blocks=1),
    )
    path = tmp_path / "m.safetensors"
    asr.save(path)
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["scaleeq"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    meta["upsampler"]["config"]["lengthscale"] = float("nan")  # json writes NaN
    save_file(tensors, str(path), metadata={"scaleeq": json.dumps(meta)})
    with pytest.raises(ValueError, match=r"'upsampler.config.lengthscale' must be a finite number"):
        scaleeq.load(path)


# --- device and dtype mismatches --------------------------------------------------------------


def _entry_points():
    import scaleeq
    from scaleeq import AdaptiveConv2d, AFEBlock, NeuralKrigingUpsampler
    from scaleeq.layers.afe import AFETokenBlock
    from scaleeq.models import EDSR, EQSR

    def asr():
        return scaleeq.retrofit(
            EDSR.from_preset("tiny", upscale=2),
            upsampler=NeuralKrigingUpsampler(16, hidden=8, blocks=1),
        )

    return {
        "NeuralKrigingUpsampler": (
            lambda: NeuralKrigingUpsampler(8, hidden=8, blocks=1),
            lambda m, x: m(x, scale=2),
            8,
            "feat",
        ),
        "AdaptiveConv2d": (lambda: AdaptiveConv2d(8, 8, 3), lambda m, x: m(x, 2.0), 8, "x"),
        "AFEBlock": (lambda: AFEBlock(8), lambda m, x: m(x, 2.0), 8, "x"),
        "AFETokenBlock": (
            lambda: AFETokenBlock(8),
            lambda m, x: m(x.flatten(2).transpose(1, 2), (6, 5), 2.0),
            8,
            "x",
        ),
        "ArbitraryScaleSR": (asr, lambda m, x: m(x, scale=2), 3, "lr"),
        "upscale": (asr, lambda m, x: scaleeq.upscale(m, x, scale=2), 3, "lr"),
        "EQSR": (lambda: EQSR.from_preset("tiny"), lambda m, x: m(x, scale=2), 3, "lr"),
    }


@pytest.mark.parametrize("entry", list(_entry_points()))
def test_device_and_dtype_mismatches_are_named(entry):
    """Without a GPU the 'meta' device stands in for another device: a model on it given a CPU
    input (and the reverse) used to fail deep inside torch ("Tensor on device cpu is not on
    the expected device meta!", "Cannot copy out of meta tensor")."""
    make, call, channels, name = _entry_points()[entry]
    x = torch.rand(1, channels, 6, 5)
    with torch.no_grad():
        with pytest.raises(
            ValueError, match=rf"{name} is on device cpu but .* weights are on meta"
        ):
            call(make().eval().to("meta"), x)
        with pytest.raises(
            ValueError, match=rf"{name} is on device meta but .* weights are on cpu"
        ):
            call(make().eval(), x.to("meta"))
        with pytest.raises(TypeError, match=rf"{name} has dtype torch.float32 .* torch.float64"):
            call(make().eval().double(), x)
        out = call(make().eval().double(), x.double())  # matching: runs
    assert out.dtype == torch.float64 and bool(torch.isfinite(out).all())
