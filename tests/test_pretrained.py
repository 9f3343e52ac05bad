"""The built-in pretrained model, the CLI default, and evaluation tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import scaleeq
from scaleeq.evaluate import EvalReport, evaluate, make_lr_hr
from scaleeq.metrics import psnr_y
from scaleeq.resize import imresize

pytest.importorskip("safetensors")
BENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
WEIGHTS = Path(scaleeq.__file__).parent / "weights" / "edsr_star_cbsd.safetensors"


@pytest.fixture(scope="module")
def model():
    return scaleeq.pretrained()


def test_weights_ship_with_the_package_and_are_small():
    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 12 * 2**20


def test_loads_in_eval_mode_at_any_scale(model):
    assert not model.training and isinstance(model, scaleeq.ArbitraryScaleSR)
    lr = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert model(lr, scale=(2.5, 1.5)).shape == (1, 3, 30, 15)
        out = scaleeq.upscale(model, lr, scale=3.3)
    assert out.shape == (1, 3, 40, 33) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="name must be one of"):
        scaleeq.pretrained("edsr-star-div2k")


@pytest.mark.skipif(not (BENCH / "Set5" / "HR").is_dir(), reason="shared benchmarks not present")
@pytest.mark.parametrize("scale", [2.0, (2.0, 3.0)])
def test_beats_bicubic_on_a_benchmark_image(model, scale):
    hr = scaleeq.data.load_image(BENCH / "Set5" / "HR" / "butterfly.png")
    lr, hr = make_lr_hr(hr, scale)
    size = tuple(hr.shape[-2:])
    sr = scaleeq.upscale(model, lr[None], size=size)
    bic = imresize(lr[None], size=size)
    gain = float(
        psnr_y(sr.clamp(0, 1), hr[None], scale=scale)
        - psnr_y(bic.clamp(0, 1), hr[None], scale=scale)
    )
    assert gain > 0.5, gain


def test_import_without_pillow_and_safetensors_and_a_clear_message():
    code = (
        "import sys\n"
        "sys.modules['PIL'] = None\nsys.modules['safetensors'] = None\n"
        "import scaleeq\n"
        "try:\n    scaleeq.pretrained()\nexcept ImportError as e:\n    print('IMPORTERROR', e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "IMPORTERROR" in res.stdout and "pip install safetensors" in res.stdout


def test_cli_upscale_without_checkpoint_uses_the_builtin_model(tmp_path, capsys):
    image = pytest.importorskip("PIL.Image")
    from scaleeq.cli import main

    image.fromarray((torch.rand(9, 11, 3) * 255).byte().numpy()).save(tmp_path / "in.png")
    assert (
        main(["upscale", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--scale", "2"]) == 0
    )
    assert "built-in model 'edsr-star-cbsd'" in capsys.readouterr().out
    assert image.open(tmp_path / "out.png").size == (22, 18)


def test_report_prints_as_a_table_with_per_axis_scales():
    torch.manual_seed(0)
    imgs = [torch.rand(3, 24, 30), torch.rand(3, 26, 22)]
    report = evaluate(
        lambda lr, size: torch.nn.functional.interpolate(lr, size=size, mode="bicubic"),
        {"toy": imgs}, scales=[2, (2, 3)], progress=False,
    )  # fmt: skip
    text = str(report)
    assert text == report.table()
    header = text.splitlines()[0].split()
    assert header[:2] == ["set", "method"] and "x2" in header and "x(2," in text
    assert len(text.splitlines()) == 3  # header + model + bicubic
    assert isinstance(EvalReport.__str__(report), str)
    row = next(r for r in report.rows if r["scale"] == (2.0, 3.0) and r["method"] == "bicubic")
    assert row["images"] == 2
    lr, hr = make_lr_hr(imgs[0], (2, 3))
    assert lr.shape[-2:] == (12, 10) and hr.shape[-2:] == (24, 30)
