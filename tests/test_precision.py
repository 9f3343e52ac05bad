"""The precision option: bf16 / fp16 autocast for inference, "auto" from the hardware."""

from __future__ import annotations

import pytest
import torch

import scaleeq
from scaleeq import precision as prec
from scaleeq.models import EDSR

from ._helpers import perturbed


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    up = scaleeq.NeuralKrigingUpsampler(16, hidden=16, blocks=1)
    return perturbed(
        scaleeq.retrofit(EDSR.from_preset("tiny"), upsampler=up, skip="bicubic")
    ).eval()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).pow(2).mean()))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_keeps_sizes_and_dtype_and_stays_close_to_fp32(model, precision):
    x = torch.rand(2, 3, 11, 9, generator=torch.Generator().manual_seed(1))
    ref = scaleeq.upscale(model, x, scale=(3.3, 2.5))
    got = scaleeq.upscale(model, x, scale=(3.3, 2.5), precision=precision, max_window_pixels=200)
    assert got.shape == ref.shape == (2, 3, 36, 23)  # the size rule does not see the precision
    assert got.dtype == torch.float32
    assert torch.isfinite(got).all()
    assert not torch.equal(got, ref)  # it did run at the lower precision
    assert _psnr(got, ref) > 35.0, _psnr(got, ref)


def test_fp32_and_auto_without_native_bf16_equal_the_default(model, monkeypatch):
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"avx2"}))
    x = torch.rand(1, 3, 8, 10, generator=torch.Generator().manual_seed(2))
    ref = scaleeq.upscale(model, x, scale=2.7)
    assert torch.equal(scaleeq.upscale(model, x, scale=2.7, precision="fp32"), ref)
    assert torch.equal(scaleeq.upscale(model, x, scale=2.7, precision="auto"), ref)


def test_auto_picks_bf16_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert prec.select_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert prec.select_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert prec.select_precision("auto", "cpu") == "fp32"
    assert prec.select_precision("fp16", "cpu") == "fp16"  # an explicit choice is kept
    assert prec.resolve_precision is prec.select_precision  # the former name, still importable


def test_an_unknown_precision_is_a_named_error(model):
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, auto"):
        scaleeq.upscale(model, torch.rand(1, 3, 8, 8), scale=2, precision="float16")


@pytest.mark.parametrize("bad", [None, torch.bfloat16, ["bf16"], "BF16"])
def test_check_precision_names_the_argument(bad):
    with pytest.raises(ValueError, match=r"compute must be one of fp32, bf16, fp16, auto; got"):
        prec.check_precision(bad, "compute")
    assert prec.check_precision("auto") == "auto"  # kept: resolving needs a device


def test_cli_precision(tmp_path, model, capsys):
    pytest.importorskip("PIL.Image")
    from PIL import Image

    from scaleeq.cli import main

    model.save(tmp_path / "m.pt")
    Image.fromarray((torch.rand(9, 11, 3) * 255).byte().numpy()).save(tmp_path / "in.png")
    args = ["upscale", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--scale", "2.5"]
    args += ["--checkpoint", str(tmp_path / "m.pt"), "--quiet"]
    assert main([*args, "--precision", "bf16"]) == 0
    assert Image.open(tmp_path / "out.png").size == (28, 23)
    with pytest.raises(SystemExit):
        main([*args, "--precision", "int8"])
    assert "--precision" in capsys.readouterr().err


def test_evaluate_at_bf16_is_within_a_tenth_of_a_db_of_fp32(model):
    from scaleeq.evaluate import evaluate

    imgs = [torch.rand(3, 36, 30, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    kw = {"scales": (2.5,), "bicubic": False, "ssim": False, "progress": False}
    ref = evaluate(model, imgs, **kw).rows[0]
    got = evaluate(model, imgs, precision="bf16", **kw).rows[0]
    assert abs(got["psnr_y"] - ref["psnr_y"]) < 0.1
    assert got["psnr_y"] != ref["psnr_y"]  # it did run at bf16 (not quantised away here)
    with pytest.raises(ValueError, match="precision must be one of"):
        evaluate(model, imgs, precision="fp8", **kw)
