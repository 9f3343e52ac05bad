"""ONNX export (scaleeq.onnx): onnxruntime output vs PyTorch eager, tiles, borders and errors.

The default run exports the bare upsampler (the smallest graph); every other model family is
exported in the slow run (``python -m pytest -m slow tests/test_onnx.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from scaleeq import NeuralKrigingUpsampler, retrofit  # noqa: E402
from scaleeq.models import EDSR, EQSR, RCAN, SwinIR  # noqa: E402
from scaleeq.onnx import (  # noqa: E402
    DEFAULT_TILE,
    OnnxUpscaler,
    convert_to_fp16,
    export_onnx,
    features_path,
)
from scaleeq.onnx import upscale as onnx_upscale  # noqa: E402

from ._helpers import perturbed  # noqa: E402
from ._standins import BasicSREDSR, EDSRPyTorch, SwinLike  # noqa: E402

TOL = 1e-4
SCALES = [1.5, 3.7, 8.0, (2.5, 1.5)]
SIZES = [(9, 7), (6, 11)]  # odd and non-square; the export traces (17, 13)
TILE = (24, 20)


def _check_against_eager(model, runner: OnnxUpscaler, channels: int, batch: int = 1) -> None:
    gen = torch.Generator().manual_seed(1)
    for h, w in SIZES:
        x = torch.rand(batch, channels, h, w, generator=gen)
        for s in SCALES:
            with torch.no_grad():
                ref = model(x, scale=s)
            out = runner.upscale(x, scale=s)
            assert out.shape == ref.shape, (h, w, s)
            torch.testing.assert_close(out, ref, atol=TOL, rtol=0, msg=f"size {(h, w)} scale {s}")


@pytest.fixture(scope="module")
def nk(tmp_path_factory):
    torch.manual_seed(0)
    up = perturbed(NeuralKrigingUpsampler(6, hidden=8, blocks=1)).eval()
    path = export_onnx(up, tmp_path_factory.mktemp("onnx") / "nk.onnx", tile=TILE)
    return up, path, OnnxUpscaler(path)


def test_bare_upsampler_matches_eager_at_every_scale_and_size(nk):
    up, _, runner = nk
    assert runner.tile == TILE and runner.in_channels == 6 and runner.out_channels == 3
    _check_against_eager(up, runner, 6, batch=2)  # the export traced batch 2: also run 1
    _check_against_eager(up, runner, 6, batch=1)


def test_file_is_valid_onnx_with_dynamic_inputs(nk):
    _, path, _ = nk
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    inputs = {i.name: i for i in model.graph.input}
    assert list(inputs) == ["lr", "scale", "origin"]
    dims = inputs["lr"].type.tensor_type.shape.dim
    assert [d.HasField("dim_param") for d in dims] == [True, False, True, True]  # B, C, h, w
    meta = json.loads({p.key: p.value for p in model.metadata_props}["scaleeq"])
    assert meta["tile"] == list(TILE)
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out[2:]] == list(TILE)


def test_windows_touching_the_borders_equal_the_full_render(nk):
    up, _, runner = nk
    x = torch.rand(1, 6, 9, 7, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = up(x, scale=3.7)  # (33, 26)
    for window in [(0, 0, 10, 9), (20, 17, 13, 9), (0, 5, 33, 4), (7, 0, 5, 26), (0, 0, 33, 26)]:
        top, left, hh, ww = window
        out = runner.render(x, scale=3.7, window=window)
        torch.testing.assert_close(
            out, full[:, :, top : top + hh, left : left + ww], atol=TOL, rtol=0
        )


def test_tiled_render_of_96x80_at_x6_equals_the_full_render(nk):
    up, _, runner = nk
    x = torch.rand(1, 6, 96, 80, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = up(x, scale=6)
    out = onnx_upscale(runner, x, scale=6)  # 24 x 24 tiles of 24 x 20
    assert out.shape == (1, 3, 576, 480)
    torch.testing.assert_close(out, full, atol=TOL, rtol=0)


def test_size_argument_and_numpy_input(nk):
    up, _, runner = nk
    x = torch.rand(1, 6, 9, 7, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = up(x, size=(20, 30))
    out = runner.upscale(x.numpy(), size=(20, 30))
    torch.testing.assert_close(out, ref, atol=TOL, rtol=0)


def test_bad_input_gets_the_same_named_errors_as_pytorch(nk):
    up, path, runner = nk
    x = torch.rand(1, 6, 9, 7)
    cases = [
        ({"scale": 0.0}, ValueError, "scale"),
        ({"scale": -2.0}, ValueError, "scale"),
        ({"scale": 2.0, "window": (10, 0, 10, 5)}, ValueError, "lies outside"),
    ]
    for kw, err, match in cases:
        with pytest.raises(err, match=match):
            up(x, **kw)
        with pytest.raises(err, match=match):
            runner.render(x, **kw)
    for bad in (torch.rand(1, 5, 9, 7), torch.rand(1, 6, 9)):
        with pytest.raises(ValueError, match="lr"):
            runner.upscale(bad, scale=2)
    with pytest.raises(ValueError, match="one scale for the batch"):
        runner.upscale(torch.rand(2, 6, 9, 7), scale=torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match="not written by scaleeq"):
        bare = onnx.load(str(path))
        del bare.metadata_props[:]
        other = path.parent / "bare.onnx"
        onnx.save_model(bare, str(other))
        OnnxUpscaler(other)


class _FixingBody(nn.Module):
    """A body whose own code fixes an input size while tracing, as some real architectures'
    code does: ``"batch"`` runs its samples in a Python loop, ``"height"`` its rows."""

    def __init__(self, fixes: str) -> None:
        super().__init__()
        self.fixes = fixes
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixes == "batch":
            return torch.cat([self.conv(s) for s in x.split(1)])
        y = self.conv(x)
        return torch.stack([row * 1.5 for row in y.unbind(2)], 2)


class _Fixing(nn.Module):
    def __init__(self, fixes: str) -> None:
        super().__init__()
        self.body = _FixingBody(fixes)
        self.tail = nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(x))


def _retrofitted(fixes: str) -> torch.nn.Module:
    torch.manual_seed(3)
    up = NeuralKrigingUpsampler(8, hidden=8, blocks=1)
    model = retrofit(_Fixing(fixes), body="body", tail="tail", upsampler=up)
    return perturbed(model).eval()


def test_a_model_that_fixes_the_batch_exports_a_one_sample_graph_and_warns(tmp_path):
    """The fallback to batch=1 (as ``export_onnx(batch=1)`` writes at once): the file's batch
    dimension is 1, the sizes stay dynamic, and OnnxUpscaler renders a batch of three sample
    by sample."""
    model = _retrofitted("batch")
    with pytest.warns(UserWarning, match="own code fixes the batch size"):
        path = export_onnx(model, tmp_path / "b.onnx", tile=TILE, in_channels=3)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1 and [d.HasField("dim_param") for d in dims[2:]] == [True, True]
    runner = OnnxUpscaler(path)
    assert runner.batch == 1 and runner.input_size is None
    _check_against_eager(model, runner, 3, batch=3)


def test_a_model_that_fixes_its_input_size_is_told_to_pass_input_size(tmp_path):
    model = _retrofitted("height")
    with pytest.raises(RuntimeError, match=r"fixes the input height while tracing.*input_size"):
        export_onnx(model, tmp_path / "h.onnx", tile=TILE, in_channels=3, example_size=(9, 7))
    assert not (tmp_path / "h.onnx").exists()


@pytest.mark.slow
def test_a_model_that_fixes_its_input_size_exports_for_one_lr_size(tmp_path):
    model = _retrofitted("height")
    path = export_onnx(model, tmp_path / "h.onnx", tile=TILE, in_channels=3, input_size=(9, 7))
    runner = OnnxUpscaler(path)
    assert runner.input_size == (9, 7) and runner.batch is None
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[2:]] == [9, 7] and dims[0].HasField("dim_param")
    x = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(2))
    for s in SCALES:
        with torch.no_grad():
            ref = model(x, scale=s)
        torch.testing.assert_close(runner.upscale(x, scale=s), ref, atol=TOL, rtol=0)
    with pytest.raises(ValueError, match=r"exactly 9 x 7 \(input_size\); got lr of 10 x 7"):
        runner.upscale(torch.rand(1, 3, 10, 7), scale=2)


def test_export_refuses_what_it_cannot_export(tmp_path):
    with pytest.raises(TypeError, match="SR model or an upsampler"):
        export_onnx(torch.nn.Conv2d(3, 3, 1), tmp_path / "x.onnx")
    up = NeuralKrigingUpsampler(4, hidden=8, blocks=1)
    with pytest.raises(TypeError, match="tile"):
        export_onnx(up, tmp_path / "x.onnx", tile=(0.5, 3))
    with pytest.raises(ValueError, match="tile"):
        export_onnx(up, tmp_path / "x.onnx", tile=0)
    with pytest.raises(ValueError, match="split=True needs an SR model"):
        export_onnx(up, tmp_path / "x.onnx", split=True)
    with pytest.raises(ValueError, match="batch must be None"):
        export_onnx(up, tmp_path / "x.onnx", batch=2)
    with pytest.raises(ValueError, match="input_size height"):
        export_onnx(up, tmp_path / "x.onnx", input_size=(0, 8))
    with pytest.raises(TypeError, match="input_size"):
        export_onnx(up, tmp_path / "x.onnx", input_size=8.5)
    official = EQSR.from_preset("tiny", official=True)
    with pytest.raises(ValueError, match="whole outputs only"):
        export_onnx(official, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_default_tile_is_half_the_upsamplers_window_budget_as_a_square():
    from scaleeq.onnx.files import default_tile

    assert default_tile(8192) == (64, 64)  # latent 256: 2**21 // 256 pixels per window
    assert default_tile(32768) == (128, 128)
    assert default_tile(100) == (16, 16)  # at least 16
    assert default_tile(2**30) == DEFAULT_TILE  # at most 256
    assert default_tile(2 * 90 * 90) == (88, 88)  # a multiple of 8, rounded down


def test_which_models_split_by_default():
    from scaleeq.onnx import splits_by_default

    assert splits_by_default(retrofit(EDSR.from_preset("tiny")))
    assert splits_by_default(EQSR.from_preset("tiny"))
    assert not splits_by_default(NeuralKrigingUpsampler(4, hidden=8, blocks=1))  # no features


def test_runners_use_lean_session_options_unless_given_their_own(nk):
    _, path, runner = nk
    options = runner.session.get_session_options()
    assert not options.enable_cpu_mem_arena and not options.enable_mem_pattern
    own = ort.SessionOptions()
    own.enable_cpu_mem_arena = True
    mine = OnnxUpscaler(path, session_options=own).session.get_session_options()
    assert mine.enable_cpu_mem_arena


def test_file_runs_in_plain_onnxruntime_without_scaleeq(nk, tmp_path):
    up, path, _ = nk
    x = torch.rand(1, 6, 20, 17, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = up(x, scale=2.5, window=(3, 4, *TILE))  # of (50, 43)
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "ref.npy", ref.numpy())
    script = textwrap.dedent(
        f"""
        import sys, importlib.abc

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "scaleeq" or name.startswith("scaleeq."):
                    raise ImportError("scaleeq is hidden in this test")

        sys.meta_path.insert(0, Block())
        import numpy as np, onnxruntime as ort
        try:
            import scaleeq  # noqa: F401
            raise SystemExit("scaleeq was importable")
        except ImportError:
            pass
        s = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
        x = np.load({str(tmp_path / "x.npy")!r})
        (out,) = s.run(None, {{"lr": x, "scale": np.array([2.5, 2.5]),
                               "origin": np.array([3, 4], dtype=np.int64)}})
        ref = np.load({str(tmp_path / "ref.npy")!r})
        assert "scaleeq" not in sys.modules
        print(float(np.abs(out - ref).max()))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout.strip().splitlines()[-1]) <= TOL


class _Custom(torch.nn.Module):  # a user's network: retrofitted by naming its parts
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
        self.head_out = torch.nn.Sequential(
            torch.nn.Conv2d(8, 12, 3, padding=1), torch.nn.PixelShuffle(2)
        )

    def forward(self, x):
        return self.head_out(self.encoder(x))


SLOW_MODELS = {
    "edsr": lambda: retrofit(EDSR.from_preset("tiny"), skip="bicubic"),
    "basicsr-edsr": lambda: retrofit(BasicSREDSR()),
    "edsr-pytorch": lambda: retrofit(EDSRPyTorch(group=True)),
    "custom": lambda: retrofit(
        _Custom(),
        body="encoder",
        tail="head_out",
        upsampler=NeuralKrigingUpsampler(8, hidden=16, blocks=1),
    ),
    "rcan": lambda: retrofit(RCAN.from_preset("tiny")),
    "swinir": lambda: retrofit(SwinIR.from_preset("tiny", upscale=2)),
    "hat": lambda: retrofit(SwinLike(hat=True)),
    "eqsr": lambda: EQSR.from_preset("tiny"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW_MODELS))
def test_sr_models_match_eager(name, tmp_path):
    torch.manual_seed(0)
    model = perturbed(SLOW_MODELS[name]()).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", tile=TILE, in_channels=3, split=False)
    runner = OnnxUpscaler(path)
    assert runner.features_session is None  # one graph: features and render in every run
    _check_against_eager(model, runner, 3)
    x = torch.rand(1, 3, 4, 3, generator=torch.Generator().manual_seed(6))  # smaller than a window
    with torch.no_grad():
        ref = model(x, scale=3.7)
    torch.testing.assert_close(runner.upscale(x, scale=3.7), ref, atol=TOL, rtol=0)
    if name == "edsr":
        x = torch.rand(1, 3, 96, 80, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            full = model(x, scale=6)
        torch.testing.assert_close(runner.upscale(x, scale=6), full, atol=TOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["edsr", "eqsr"])
def test_split_export_matches_eager(name, tmp_path):
    torch.manual_seed(0)
    model = perturbed(SLOW_MODELS[name]()).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", tile=TILE, split=True)
    assert features_path(path).is_file()
    runner = OnnxUpscaler(path)
    assert runner.features_session is not None
    _check_against_eager(model, runner, 3)
    feats = onnx.load(str(features_path(path)))
    assert [i.name for i in feats.graph.input] == ["lr", "scale"]
    with pytest.raises(ValueError, match="features file"):
        OnnxUpscaler(features_path(path))


def test_without_the_onnx_extra_scaleeq_works_and_export_says_what_to_install():
    script = textwrap.dedent(
        """
        import sys, importlib.abc

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("onnx", "onnxscript", "onnxruntime"):
                    raise ImportError(f"{name} is hidden in this test")

        sys.meta_path.insert(0, Block())
        import torch, scaleeq
        from scaleeq import NeuralKrigingUpsampler
        up = NeuralKrigingUpsampler(4, hidden=8, blocks=1)
        assert up(torch.rand(1, 4, 5, 6), scale=2.5).shape == (1, 3, 13, 15)
        from scaleeq.onnx import OnnxUpscaler, export_onnx
        for call in (lambda: export_onnx(up, "x.onnx"), lambda: OnnxUpscaler("x.onnx")):
            try:
                call()
            except ImportError as e:
                assert "pip install 'scaleeq[onnx]'" in str(e), e
            else:
                raise SystemExit("no ImportError")
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


# -- float16 export (precision="fp16") ----------------------------------------------------------
# Bound of the float16 graphs' outputs against float32 eager PyTorch, in dB (PSNR with peak 1 on
# the raw outputs, not clamped). Measured with onnxruntime's CPU provider: 71-83 dB for these
# tiny models (EQSR tiny lowest), 79 dB for the built-in model against its float32 file; ONNX's
# reference evaluator, which computes float16 operators in float16, gives 78 dB for the
# built-in model. A graph that computed the query positions in float16 instead (float16 steps
# by whole pixels from LR column 1024 on) gives 51 dB at the windows of the far-positions test:
# 60 dB tells the two apart, with room for runtimes whose float16 kernels round differently.
FP16_DB = 60.0
F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def _psnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (out.double() - ref.double()).square().mean()))


def _io_types(model) -> dict[str, int]:
    graph = (model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))).graph
    return {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)}


def _meta(path) -> dict:
    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["scaleeq"])


def _stored_as(path, weight: torch.Tensor) -> set[int]:
    """The float types of the initializers of ``path`` that hold ``weight``'s values (in any
    layout: a transposed copy counts), rounded to that type."""
    w = weight.detach().numpy().ravel()
    found = set()
    for init in onnx.load(str(path)).graph.initializer:
        if init.data_type in (F32, F16):
            a = onnx.numpy_helper.to_array(init).ravel()
            if a.size == w.size and np.array_equal(np.sort(a), np.sort(w.astype(a.dtype))):
                found.add(init.data_type)
    return found


def _check_fp16_against_eager(model, runner: OnnxUpscaler, channels: int) -> None:
    gen = torch.Generator().manual_seed(1)
    for h, w in SIZES:
        x = torch.rand(1, channels, h, w, generator=gen)
        for s in SCALES:
            with torch.no_grad():
                ref = model(x, scale=s)
            out = runner.upscale(x, scale=s)
            assert out.dtype == torch.float32 and out.shape == ref.shape, (h, w, s)
            assert _psnr(out, ref) > FP16_DB, (h, w, s, _psnr(out, ref))


@pytest.fixture(scope="module")
def nk16(nk, tmp_path_factory):
    """The float16 form of ``nk``'s file, by :func:`convert_to_fp16` (the same graph as
    ``export_onnx(..., precision="fp16")`` writes: test_convert_to_fp16_writes_the_fp16_export,
    slow run; the fp16 export itself: the split-export test)."""
    up, fp32, _ = nk
    path = convert_to_fp16(fp32, tmp_path_factory.mktemp("onnx16") / "nk16.onnx")
    return up, path, OnnxUpscaler(path)


def test_fp16_file_takes_and_returns_float32_and_records_its_precision(nk, nk16):
    up, path, runner = nk16
    assert _io_types(path) == {
        "lr": F32, "scale": onnx.TensorProto.DOUBLE, "origin": onnx.TensorProto.INT64, "sr": F32,
    }  # fmt: skip
    assert _meta(path)["precision"] == "fp16" and runner.precision == "fp16"
    assert _meta(nk[1])["precision"] == "fp32" and nk[2].precision == "fp32"
    _check_fp16_against_eager(up, runner, 6)
    out = runner.upscale(torch.rand(2, 6, 9, 7), scale=2.5)  # the export traced batch 2: run 2
    assert out.shape == (2, 3, 23, 18) and out.dtype == torch.float32


def test_fp16_file_stores_the_image_weights_as_float16(nk, nk16):
    """The weights of the image computation are float16 initializers (no float32 copy); the
    offset encodings' projections (head_y, head_x) read only the geometry and stay float32."""
    up, path, _ = nk16
    weights = {n: p for n, p in up.named_parameters() if p.ndim >= 2}
    assert len(weights) >= 8
    for name, w in weights.items():
        assert _stored_as(nk[1], w) == {F32}, name  # the float32 file: every weight in float32
        expected = {F32} if name.startswith(("head_y.", "head_x.")) else {F16}
        assert _stored_as(path, w) == expected, name


def test_fp16_keeps_query_positions_exact_far_from_the_origin(nk16):
    """Query positions are computed as in the float32 graph: at LR columns near 1475, where
    float16 steps by whole pixels, windows still match eager PyTorch."""
    up, _, runner = nk16
    x = torch.rand(1, 6, 5, 1500, generator=torch.Generator().manual_seed(3))
    for s, window in ((2.0, (0, 2950, 10, 40)), (1.3, (0, 1900, 6, 40))):
        with torch.no_grad():
            ref = up(x, scale=s, window=window)
        out = runner.render(x, scale=s, window=window)
        assert out.shape == ref.shape and _psnr(out, ref) > FP16_DB, (s, _psnr(out, ref))


def test_a_file_without_a_recorded_precision_is_fp32(nk, tmp_path):
    up, path, _ = nk
    model = onnx.load(str(path))
    (entry,) = [p for p in model.metadata_props if p.key == "scaleeq"]
    meta = json.loads(entry.value)
    del meta["precision"]
    entry.value = json.dumps(meta)
    onnx.save_model(model, str(tmp_path / "old.onnx"))
    runner = OnnxUpscaler(tmp_path / "old.onnx")
    assert runner.precision == "fp32"
    x = torch.rand(1, 6, 9, 7, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = up(x, scale=3.7)
    torch.testing.assert_close(runner.upscale(x, scale=3.7), ref, atol=TOL, rtol=0)
    meta["precision"] = "int8"
    entry.value = json.dumps(meta)
    onnx.save_model(model, str(tmp_path / "odd.onnx"))
    with pytest.raises(ValueError, match="damaged scaleeq metadata.*precision"):
        OnnxUpscaler(tmp_path / "odd.onnx")


def test_convert_to_fp16_refuses_what_it_cannot_convert(nk, nk16, tmp_path):
    fp32, fp16 = nk[1], nk16[1]
    with pytest.raises(ValueError, match="already fp16"):
        convert_to_fp16(fp16, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="is the input file"):
        convert_to_fp16(fp32, fp32)
    with pytest.raises(ValueError, match="is not a file"):
        convert_to_fp16(tmp_path / "none.onnx", tmp_path / "x.onnx")
    plain = onnx.load(str(fp32))
    del plain.metadata_props[:]
    onnx.save_model(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="not written by scaleeq"):
        convert_to_fp16(tmp_path / "plain.onnx", tmp_path / "x.onnx")
    feats = onnx.load(str(fp32))  # a features file is named in its metadata
    (entry,) = feats.metadata_props
    entry.value = json.dumps({**json.loads(entry.value), "stage": "features"})
    onnx.save_model(feats, str(tmp_path / "m.features.onnx"))
    with pytest.raises(ValueError, match="features file of a split export"):
        convert_to_fp16(tmp_path / "m.features.onnx", tmp_path / "x.onnx")
    split = onnx.load(str(fp32))  # a render file whose features file is gone
    (entry,) = split.metadata_props
    entry.value = json.dumps({**json.loads(entry.value), "stages": 2})
    onnx.save_model(split, str(tmp_path / "lone.onnx"))
    with pytest.raises(ValueError, match="features file .* is missing"):
        convert_to_fp16(tmp_path / "lone.onnx", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("split", [True, False])
def test_convert_to_fp16_writes_the_fp16_export(split, tmp_path):
    """Converting a float32 file gives the graphs and settings ``export_onnx(...,
    precision="fp16")`` writes for the same model (both files of a split export)."""
    torch.manual_seed(0)
    up = NeuralKrigingUpsampler(16, hidden=16, blocks=1)
    model = perturbed(retrofit(EDSR.from_preset("tiny"), upsampler=up)).eval()
    for sub in "abc":
        (tmp_path / sub).mkdir()
    made = export_onnx(model, tmp_path / "a" / "m.onnx", tile=TILE, split=split, precision="fp16")
    fp32 = export_onnx(model, tmp_path / "b" / "m.onnx", tile=TILE, split=split)
    got = convert_to_fp16(fp32, tmp_path / "c" / "m.onnx")
    pairs = [(made, got)] + ([(features_path(made), features_path(got))] if split else [])
    for a, b in pairs:
        ma, mb = onnx.load(str(a)), onnx.load(str(b))
        assert _meta(a) == {**_meta(b), "scaleeq_version": _meta(a)["scaleeq_version"]}
        del ma.metadata_props[:], mb.metadata_props[:]
        assert ma.graph == mb.graph


def test_export_refuses_an_unknown_precision(tmp_path):
    up = NeuralKrigingUpsampler(4, hidden=8, blocks=1)
    for bad in ("bf16", "auto", "FP16", 16, None):
        with pytest.raises(ValueError, match=r"precision must be one of 'fp32', 'fp16'"):
            export_onnx(up, tmp_path / "x.onnx", precision=bad)
    assert not (tmp_path / "x.onnx").exists()


def test_an_sr_model_exports_split_at_the_lean_tile_by_default_and_fp16_passes_float16(tmp_path):
    """An SR model exports split by default (features once per image), rendering tiles of half
    the upsampler's window budget: the default that keeps onnxruntime's peak memory near
    scaleeq.upscale's. One export checks that in fp16 (the fp32 split: tests/test_cli.py's
    export round trip; every model, both precisions: the slow run).

    Both graphs in float16: ``feat`` is the features graph's float16 output and the render
    graph's float16 input; ``lr`` and ``sr`` stay float32. The backbone's convolutions are
    stored in float16, except the AFE blocks' weights, which the scale modulates (geometry)."""
    torch.manual_seed(0)
    up = NeuralKrigingUpsampler(16, hidden=64, blocks=1)  # budget 2**21 // 64 -> 128 x 128
    model = perturbed(retrofit(EDSR.from_preset("tiny"), upsampler=up)).eval()
    path = export_onnx(model, tmp_path / "m.onnx", precision="fp16")
    feats = features_path(path)
    assert feats.is_file() and OnnxUpscaler(path).tile == (128, 128)
    assert _io_types(feats) == {"lr": F32, "scale": onnx.TensorProto.DOUBLE, "feat": F16}
    assert _io_types(path)["feat"] == F16 and _io_types(path)["sr"] == F32
    for p in (path, feats):
        assert _meta(p)["precision"] == "fp16" and _meta(p)["feat_dtype"] == "float16"
    runner = OnnxUpscaler(path)
    assert runner.features_session is not None and runner.feat_dtype == np.float16
    _check_fp16_against_eager(model, runner, 3)
    body = model.backbone.body
    for conv in (body.blocks[0].conv1, body.blocks[-1].conv2, model.backbone.conv_after_body):
        assert _stored_as(feats, conv.weight) == {F16}
    assert _stored_as(feats, body.afe[0].conv.weight) == {F32}
    assert _stored_as(path, model.upsampler.blocks[0].ffn[0].weight) == {F16}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "split"), [("eqsr", True), ("eqsr", False), ("edsr", False)])
def test_fp16_sr_models_match_eager(name, split, tmp_path):
    torch.manual_seed(0)
    model = perturbed(SLOW_MODELS[name]()).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", tile=TILE, split=split,
                       precision="fp16")  # fmt: skip
    runner = OnnxUpscaler(path)
    assert runner.precision == "fp16" and (runner.features_session is not None) == split
    assert _io_types(path)["sr"] == F32
    _check_fp16_against_eager(model, runner, 3)


def test_to_float16_converts_the_image_computation_only():
    """A hand-built graph: the image path (a convolution times a scale-derived factor, a
    sigmoid kept in float32, a nearest resize) becomes float16; the scale's own arithmetic,
    an output of its own, stays float32 and bit-exact; the resize's scales keep their type."""
    from onnx import TensorProto, helper, numpy_helper

    from scaleeq.onnx.half import to_float16

    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["scale"], ["s32"], to=F32),
        helper.make_node("ReduceSum", ["s32"], ["geo"], keepdims=0),
        helper.make_node("Conv", ["lr", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "geo"], ["m"]),
        helper.make_node("Sigmoid", ["m"], ["g"]),
        helper.make_node("Resize", ["g", "", "sc"], ["r"], mode="nearest"),
        helper.make_node("Add", ["r", "one"], ["sr"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("lr", F32, [1, 2, 4, 5]),
         helper.make_tensor_value_info("scale", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info("sr", F32, None),
         helper.make_tensor_value_info("geo", F32, None)],
        [numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc"),
         numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    half = to_float16(model, image=["lr"], float32_inputs=["lr"], float32_outputs=["sr"],
                      keep_float32={"Sigmoid"})  # fmt: skip
    onnx.checker.check_model(half, full_check=True)
    inits = {t.name: t.data_type for t in half.graph.initializer}
    assert inits["sc"] == F32 and F16 in inits.values() and "w" not in inits  # w as float16
    types = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    assert types["s32"] == F32 and types["c"] == F16 and types["m"] == F16
    assert types["g"] == F32  # kept in float32: Sigmoid reads a float32 copy of m
    sigmoid = next(n for n in half.graph.node if n.op_type == "Sigmoid")
    assert types[sigmoid.input[0]] == F32
    assert _io_types(half) == {"lr": F32, "scale": TensorProto.DOUBLE, "sr": F32, "geo": F32}
    lr = rng.random((1, 2, 4, 5)).astype(np.float32)
    feeds = {"lr": lr, "scale": np.array([1.7, 2.9])}
    ref = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    out = ort.InferenceSession(half.SerializeToString()).run(None, feeds)
    assert out[0].dtype == np.float32 and out[0].shape == ref[0].shape == (1, 3, 8, 10)
    assert out[1] == ref[1] == np.float32(1.7) + np.float32(2.9)  # geometry: float32, exact
    np.testing.assert_allclose(out[0], ref[0], atol=2e-3, rtol=0)
    assert not np.array_equal(out[0], ref[0])  # it did run in float16
    assert model.graph.initializer[0].data_type == F32  # the input model is not changed
