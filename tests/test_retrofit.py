"""retrofit(): every recognised layout, identity at init, shared weights, save/load."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import scaleeq
from scaleeq import ArbitraryScaleSR, NeuralKrigingUpsampler, retrofit
from scaleeq.models import EDSR, RCAN, SwinIR
from scaleeq.retrofit import detect_layout

from ._helpers import (
    FEW,
    FLOAT_ARG,
    FUZZ,
    INT_ARG,
    SCALE_WORDS,
    SIZE_ARG,
    WINDOW_ARG,
    _check_hw,
    _expected_hw,
    fuzz_retrofitted_edsr,
    named_or_finite,
    scale_args,
)
from ._standins import BasicSREDSR, EDSRPyTorch, SwinLike, basicsr_rcan, pre_tail_module

SCALES = [1.5, 2.0, 3.7, (2.5, 1.5), 8.0]

# (id, factory, input multiplier of the original model, expected layout)
LAYOUTS = [
    ("scaleeq-edsr", lambda: EDSR.from_preset("tiny", upscale=2), 1.0, "basicsr"),
    ("scaleeq-rcan", lambda: RCAN.from_preset("tiny", upscale=3), 1.0, "basicsr"),
    ("scaleeq-swinir", lambda: SwinIR.from_preset("tiny", upscale=2), 1.0, "swin"),
    (
        "scaleeq-swinir-direct",
        lambda: SwinIR.from_preset("tiny", upscale=3, upsampler="pixelshuffledirect"),
        1.0,
        "swin",
    ),
    ("basicsr-edsr", lambda: BasicSREDSR(upscale=4), 1.0, "basicsr"),
    ("basicsr-rcan", lambda: basicsr_rcan(upscale=2), 1.0, "basicsr"),
    ("edsr-pytorch-edsr", lambda: EDSRPyTorch(upscale=2), 255.0, "edsr_pytorch"),
    ("edsr-pytorch-rcan", lambda: EDSRPyTorch(upscale=3, group=True), 255.0, "edsr_pytorch"),
    ("swinir-pixelshuffle", lambda: SwinLike(upsampler="pixelshuffle"), 1.0, "swin"),
    ("swinir-pixelshuffledirect", lambda: SwinLike(upsampler="pixelshuffledirect"), 1.0, "swin"),
    ("swinir-nearest+conv", lambda: SwinLike(upsampler="nearest+conv", upscale=4), 1.0, "swin"),
    ("hat-pixelshuffle", lambda: SwinLike(upsampler="pixelshuffle", hat=True), 1.0, "swin"),
]
IDS = [layout[0] for layout in LAYOUTS]


def _pretrained(factory) -> nn.Module:
    torch.manual_seed(0)
    model = factory()
    with torch.no_grad():  # "pretrained": weights away from their init
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _pre_tail_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    captured = {}
    hook = pre_tail_module(model).register_forward_pre_hook(
        lambda m, inp: captured.setdefault("x", inp[0].clone())
    )
    with torch.no_grad():
        model(x)
    hook.remove()
    return captured["x"]


@pytest.mark.parametrize(("name", "factory", "mult", "layout"), LAYOUTS, ids=IDS)
def test_identity_at_init_and_pretrained_weights_untouched(name, factory, mult, layout):
    model = _pretrained(factory)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr = torch.rand(2, 3, 7, 9)  # odd sizes: Swin layouts pad to the window inside
    reference = _pre_tail_features(model, lr * mult)[:, :, :7, :9]
    asr = retrofit(model)
    assert isinstance(asr, ArbitraryScaleSR) and asr.layout == layout
    with torch.no_grad():
        for scale in [*SCALES, torch.tensor([1.3, 5.0])]:
            torch.testing.assert_close(asr.features(lr, scale), reference, rtol=0, atol=1e-6)
    # the input model is not mutated: same submodules, same values, still runs as before
    assert [n for n, _ in model.named_children()] == list(before_children(factory))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # the wrapper shares the pretrained parameters (same objects), it does not copy them
    shared = {id(p) for p in model.parameters()}
    assert sum(id(p) in shared for p in asr.parameters()) > 0
    assert not any(
        n.startswith(("upsample", "conv_last", "tail")) for n, _ in asr.backbone.named_children()
    )


def before_children(factory):
    return [n for n, _ in factory().named_children()]


@pytest.mark.parametrize(("name", "factory", "mult", "layout"), LAYOUTS, ids=IDS)
def test_every_layout_runs_at_every_scale_and_trains(name, factory, mult, layout):
    model = _pretrained(factory)
    asr = retrofit(
        model, upsampler=NeuralKrigingUpsampler(_channels(asr_probe(model)), hidden=16, blocks=1)
    )
    lr = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        for scale in SCALES:
            y = asr(lr, scale=scale)
            rh, rw = scale if isinstance(scale, tuple) else (scale, scale)
            assert y.shape == (1, 3, int(6 * rh + 0.5), int(5 * rw + 0.5))
            assert torch.isfinite(y).all()
    asr.train()
    asr(lr, scale=torch.tensor([2.7]), window=(1, 2, 5, 5)).square().mean().backward()
    afe = [m for m in asr.modules() if isinstance(m, scaleeq.AFEBlock)]
    assert afe and all(m.pw_out.weight.grad.abs().sum() > 0 for m in afe)
    first = asr.backbone.head[0] if layout == "edsr_pytorch" else asr.backbone.conv_first
    assert (
        first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    )  # the pretrained body
    assert asr.upsampler.tail.weight.grad.abs().sum() > 0


def asr_probe(model):
    return retrofit(model, afe="none")


def _channels(asr: ArbitraryScaleSR) -> int:
    return asr.upsampler.in_channels


def test_output_transform_and_tiled_upscale():
    model = _pretrained(lambda: EDSR.from_preset("tiny", upscale=2))
    asr = retrofit(model, upsampler=NeuralKrigingUpsampler(16, hidden=16, blocks=1))
    lr = torch.rand(1, 3, 8, 7)
    with torch.no_grad():
        feat = asr.features(lr, 3.0)
        raw = asr.upsampler(feat, scale=3.0)
        full = asr(lr, scale=3.0)
    torch.testing.assert_close(full, raw / model.img_range + model.mean)
    torch.testing.assert_close(
        scaleeq.upscale(asr, lr, scale=3.0, max_window_pixels=100), full, rtol=1e-5, atol=1e-5
    )


def test_edsr_pytorch_pixel_range_is_inferred():
    assert retrofit(EDSRPyTorch(rgb_range=255.0)).pixel_range == pytest.approx(255.0)
    assert retrofit(EDSRPyTorch(rgb_range=1.0)).pixel_range == pytest.approx(1.0)


def test_afe_every_and_none():
    model = EDSR.from_preset("baseline", upscale=2)
    assert sum(isinstance(m, scaleeq.AFEBlock) for m in retrofit(model).modules()) == 4
    assert sum(isinstance(m, scaleeq.AFEBlock) for m in retrofit(model, afe_every=2).modules()) == 8
    assert sum(isinstance(m, scaleeq.AFEBlock) for m in retrofit(model, afe="none").modules()) == 0
    rcan = RCAN.from_preset("tiny", upscale=2)
    assert (
        sum(isinstance(m, scaleeq.AFEBlock) for m in retrofit(rcan).modules()) == 2
    )  # one per group


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head_out = nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x):
        return self.head_out(self.encoder(x))


def test_custom_model_with_named_parts():
    model = _Custom()
    asr = retrofit(
        model,
        body="encoder",
        tail="head_out",
        upsampler=NeuralKrigingUpsampler(8, hidden=16, blocks=1),
    )
    assert asr.layout == "custom"
    assert asr(torch.rand(1, 3, 5, 5), scale=2.5).shape == (1, 3, 13, 13)
    assert "head_out" in dict(model.named_children())


class _Raises(nn.Module):
    def __init__(self, error: Exception):
        super().__init__()
        self.error = error

    def forward(self, x):
        raise self.error


@pytest.mark.parametrize(
    "error, passes_through",
    [
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] "
                      "DefaultCPUAllocator: can't allocate memory"), True),
    ],
)  # fmt: skip
def test_custom_body_failures_are_named_but_out_of_memory_passes_through(error, passes_through):
    model = _Custom()
    model.encoder = _Raises(error)
    asr = retrofit(
        model,
        body="encoder",
        tail="head_out",
        upsampler=NeuralKrigingUpsampler(8, hidden=8, blocks=1),
    )
    expected = type(error) if passes_through else ValueError
    with pytest.raises(expected) as info:
        asr(torch.rand(1, 3, 5, 5), scale=2.0)
    if passes_through:
        assert info.value is error  # unchanged: the caller can catch and retry smaller
    else:
        assert "the body 'encoder' named in retrofit(body=...)" in str(info.value)
        assert info.value.__cause__ is error


class TestErrors:
    def test_unrecognised_model_lists_attributes_and_how_to_name_parts(self):
        with pytest.raises(ValueError, match=r"\['encoder', 'head_out'\].*body=.*tail="):
            retrofit(_Custom())

    def test_not_a_module(self):
        with pytest.raises(TypeError, match="model must be an nn.Module"):
            detect_layout("edsr")  # type: ignore[arg-type]

    def test_bad_named_parts_and_options(self):
        with pytest.raises(ValueError, match="body='nope' must name a submodule"):
            retrofit(_Custom(), body="nope", tail="head_out")
        with pytest.raises(ValueError, match="afe must be"):
            retrofit(EDSR.from_preset("tiny"), afe="all")
        with pytest.raises(ValueError, match="afe_every"):
            retrofit(EDSR.from_preset("tiny"), afe_every=0)
        with pytest.raises(
            TypeError, match=r"upsampler \(str\) does not satisfy .*Upsampler.*nn.Module"
        ):
            retrofit(EDSR.from_preset("tiny"), upsampler="nk")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"needs window_exact, default_window_pixels.*plan"):
            retrofit(EDSR.from_preset("tiny"), upsampler=torch.nn.Conv2d(16, 3, 1))

    def test_forward_needs_scale_or_size(self):
        asr = retrofit(EDSR.from_preset("tiny"))
        with pytest.raises(TypeError, match="give scale"):
            asr(torch.rand(1, 3, 4, 4))
        with pytest.raises(ValueError, match="3 per-sample scales but the input batch has 1"):
            asr.features(torch.rand(1, 3, 4, 4), torch.tensor([1.0, 2.0, 3.0]))


class TestSaveLoad:
    def _asr(self):
        model = _pretrained(lambda: EDSR.from_preset("tiny", upscale=2))
        asr = retrofit(model, upsampler=NeuralKrigingUpsampler(16, hidden=16, blocks=1))
        with torch.no_grad():  # trained-like: every part differs from a fresh build
            for p in asr.parameters():
                p.add_(0.01 * torch.randn_like(p))
        return asr.eval()

    @pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
    def test_round_trip_is_bit_exact(self, tmp_path, suffix):
        if suffix == ".safetensors":
            pytest.importorskip("safetensors")
        asr = self._asr()
        path = tmp_path / f"edsr_star{suffix}"
        asr.save(path)
        assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left
        loaded = scaleeq.load(path)
        for key, value in asr.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        lr = torch.rand(1, 3, 6, 6)
        with torch.no_grad():
            assert torch.equal(loaded.eval()(lr, scale=2.5), asr(lr, scale=2.5))

    def test_foreign_model_needs_model_argument(self, tmp_path):
        model = _pretrained(lambda: BasicSREDSR(upscale=2))
        asr = retrofit(model, upsampler=NeuralKrigingUpsampler(8, hidden=16, blocks=1))
        asr.save(tmp_path / "x.pt")
        with pytest.raises(ValueError, match="pass model="):
            scaleeq.load(tmp_path / "x.pt")
        loaded = scaleeq.load(tmp_path / "x.pt", model=BasicSREDSR(upscale=2))
        lr = torch.rand(1, 3, 5, 5)
        with torch.no_grad():
            assert torch.equal(loaded.eval()(lr, scale=2.0), asr.eval()(lr, scale=2.0))

    @pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
    def test_truncated_file(self, tmp_path, suffix):
        if suffix == ".safetensors":
            pytest.importorskip("safetensors")
        path = tmp_path / f"m{suffix}"
        self._asr().save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="not a readable scaleeq checkpoint"):
            scaleeq.load(path)

    def test_foreign_files(self, tmp_path):
        plain = tmp_path / "plain.pt"
        torch.save(EDSR.from_preset("tiny").state_dict(), plain)
        with pytest.raises(ValueError, match="not a readable scaleeq checkpoint"):
            scaleeq.load(plain)
        junk = tmp_path / "junk.bin"
        junk.write_bytes(b"hello world, not weights")
        with pytest.raises(ValueError, match="not a readable scaleeq checkpoint"):
            scaleeq.load(junk)
        with pytest.raises(ValueError, match="is not a file"):
            scaleeq.load(tmp_path / "missing.pt")

    def test_failed_write_leaves_no_file(self, tmp_path, monkeypatch):
        asr = self._asr()
        path = tmp_path / "m.pt"

        def boom(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(torch, "save", boom)
        with pytest.raises(OSError, match="disk full"):
            asr.save(path)
        assert list(tmp_path.iterdir()) == []


def test_bicubic_skip_starts_as_bicubic_and_keeps_windows_exact(tmp_path):
    model = _pretrained(lambda: EDSR.from_preset("tiny", upscale=2))
    asr = retrofit(
        model, skip="bicubic", upsampler=NeuralKrigingUpsampler(16, hidden=16, blocks=1)
    ).eval()
    lr = torch.rand(2, 3, 9, 7)
    with torch.no_grad():
        full = asr(lr, scale=2.6)
        # PyTorch's own bicubic (same pixel-centre convention, a = -0.75, border clamped)
        expected = torch.nn.functional.interpolate(
            lr, size=(23, 18), mode="bicubic", align_corners=False
        )
        torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-5)  # zero residual at init
        for p in asr.upsampler.parameters():
            p.add_(0.05 * torch.randn_like(p))
        full = asr(lr, scale=2.6)
        assert (full - expected).abs().max() > 1e-3
        win = asr(lr, scale=2.6, window=(3, 4, 10, 9))
        torch.testing.assert_close(win, full[:, :, 3:13, 4:13], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            scaleeq.upscale(asr, lr, scale=2.6, max_window_pixels=60), full, rtol=1e-5, atol=1e-5
        )
    asr.save(tmp_path / "skip.pt")
    with torch.no_grad():
        assert torch.equal(scaleeq.load(tmp_path / "skip.pt").eval()(lr, scale=2.6), full)
    with pytest.raises(ValueError, match="skip must be"):
        retrofit(model, skip="lanczos")


# -- Issue 16's hand-made mutants: wrong-number bugs the suite used to miss ----------------------
# The test states an invariant or compares against an independent reference, so the mutation it
# names fails it.


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


# -- Issue 12's reliability promises: checkpoint metadata ------------------------------------------


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


# -- Property-based fuzzing of the public API (issue 12) ----------------------------------------
# For random good and bad argument values a call either raises ValueError / TypeError whose
# message names the argument, or returns a finite output of the documented size; any other
# exception, a silent NaN, a wrong size or a slow example fails. Strategies, settings and checks:
# tests/_helpers.py.


# shared tiny modules (built once; calls never change them)
@pytest.fixture(scope="module")
def asr():
    return fuzz_retrofitted_edsr()


@FUZZ
@given(scale=scale_args(batch=1), size=SIZE_ARG, window=WINDOW_ARG)
def test_arbitrary_scale_sr_scale_size_window(asr, scale, size, window):
    lr = torch.rand(1, 3, 6, 5)
    if scale is None and size is None:
        scale = 2.5
    expected = _expected_hw(scale, size, window, (6, 5))
    with torch.no_grad():
        named_or_finite(
            lambda: asr(lr, scale=scale, size=size, window=window),
            SCALE_WORDS,
            lambda out: _check_hw(expected, out),
        )


@FEW
@given(
    afe=st.sampled_from(["per_group", "none", "all"]),
    afe_every=st.one_of(st.none(), INT_ARG),
    skip=st.sampled_from(["none", "bicubic", "residual"]),
    pixel_range=st.one_of(st.none(), FLOAT_ARG),
    body=st.sampled_from([None, None, "body", "nope"]),
    tail=st.sampled_from([None, None, "upsample", 3]),
)
def test_retrofit_options(afe, afe_every, skip, pixel_range, body, tail):
    torch.manual_seed(0)
    net = EDSR(num_feat=8, num_block=2, upscale=2)
    kwargs = {
        "afe": afe, "afe_every": afe_every, "skip": skip, "pixel_range": pixel_range,
        "body": body, "tail": tail,
    }  # fmt: skip
    try:
        model = scaleeq.retrofit(
            net, upsampler=NeuralKrigingUpsampler(8, hidden=8, blocks=1), **kwargs
        )
    except (ValueError, TypeError) as e:
        assert any(k in str(e) for k in kwargs), f"{type(e).__name__}: {e}"
        return
    with torch.no_grad():  # a body that does not read images fails naming the body
        named_or_finite(
            lambda: model(torch.rand(1, 3, 6, 5), scale=1.5),
            ("the body 'body' named in retrofit(body=...)",),
            lambda out: out.shape == (1, 3, 9, 8),
        )
