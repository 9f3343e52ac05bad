"""The scaleeq command: upscale, eval, bench and its one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from scaleeq import NeuralKrigingUpsampler, retrofit
from scaleeq.cli import main
from scaleeq.models import EDSR

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    asr = retrofit(
        EDSR.from_preset("tiny", upscale=2),
        upsampler=NeuralKrigingUpsampler(16, hidden=16, blocks=1),
    )
    asr.save(root / "tiny.pt")
    img = (torch.rand(13, 17, 3) * 255).byte().numpy()
    Image.fromarray(img).save(root / "in.png")
    (root / "set" / "HR").mkdir(parents=True)
    for i in range(2):
        Image.fromarray((torch.rand(40, 36, 3) * 255).byte().numpy()).save(
            root / "set" / "HR" / f"{i}.png"
        )
    (root / "broken.png").write_bytes(b"not an image")
    return root


def test_upscale_by_scale_pair_and_size(files, capsys):
    out = files / "out.png"
    assert (
        main(
            [
                "upscale",
                str(files / "in.png"),
                str(out),
                "--scale",
                "2.5x1.5",
                "--checkpoint",
                str(files / "tiny.pt"),
                "--tile",
                "16",
                "--quiet",
            ]
        )
        == 0
    )
    assert Image.open(out).size == (
        43,
        20,
    )  # width 17 * 2.5 = 42.5 -> 43, height 13 * 1.5 = 19.5 -> 20
    assert (
        main(
            [
                "upscale",
                str(files / "in.png"),
                str(out),
                "--size",
                "50x30",
                "--checkpoint",
                str(files / "tiny.pt"),
            ]
        )
        == 0
    )
    assert Image.open(out).size == (50, 30)
    assert "-> " in capsys.readouterr().out


@pytest.mark.parametrize("bits", [8, 16])
def test_upscale_output_round_trips_at_8_and_16_bits(files, bits):
    """The file holds the model's output to 1/255 or 1/65535 and reads back through load_image;
    a 16-bit PNG is really 16-bit (IHDR bit depth, and closer than 8 bits could be)."""
    import scaleeq
    from scaleeq.data import load_image

    if bits == 16:
        pytest.importorskip("png")
    out = files / f"out{bits}.png"
    argv = ["upscale", str(files / "in.png"), str(out), "--scale", "2", "--quiet"]
    assert main([*argv, "--checkpoint", str(files / "tiny.pt"), "--bits", str(bits)]) == 0
    assert out.read_bytes()[24] == bits  # IHDR bit depth
    model = scaleeq.load(files / "tiny.pt").eval()
    expected = scaleeq.upscale(model, load_image(files / "in.png")[None], scale=2)[0].clamp(0, 1)
    err = (load_image(out) - expected).abs().max().item()
    assert err <= 0.5 / (2**bits - 1) + 1e-6
    if bits == 16:
        assert err < 0.5 / 255 / 10  # 8-bit storage could not be this close


def test_eval_prints_a_table(files, capsys):
    code = main(
        [
            "eval",
            "--checkpoint",
            str(files / "tiny.pt"),
            "--data",
            str(files / "set"),
            "--scales",
            "2,3",
            "--quiet",
            "--json",
            str(files / "r.json"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "bicubic" in out and "x2" in out and "x3" in out
    assert (files / "r.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["upscale", "missing.png", "o.png", "--scale", "2", "--checkpoint", "{ck}"],
            "input image 'missing.png' does not exist",
        ),
        (
            ["upscale", "{img}", "o.png", "--scale", "abc", "--checkpoint", "{ck}"],
            "--scale must look like",
        ),
        (
            ["upscale", "{img}", "o.png", "--scale", "-2", "--checkpoint", "{ck}"],
            "--scale must be positive",
        ),
        (
            ["upscale", "{img}", "o.png", "--size", "10x", "--checkpoint", "{ck}"],
            "--size must look like",
        ),
        (
            ["upscale", "{img}", "o.png", "--checkpoint", "{ck}"],
            "exactly one of --scale and --size",
        ),
        (
            ["upscale", "{img}", "o.png", "--scale", "2", "--checkpoint", "nope.pt"],
            "checkpoint 'nope.pt' does not exist",
        ),
        (
            ["upscale", "{broken}", "o.png", "--scale", "2", "--checkpoint", "{ck}"],
            "cannot read image",
        ),
        (
            ["upscale", "{img}", "o.png", "--scale", "2", "--checkpoint", "{broken}"],
            "not a readable scaleeq checkpoint",
        ),
        (
            ["upscale", "{img}", "o.jpg", "--scale", "2", "--bits", "16", "--checkpoint", "{ck}"],
            "bits=16 is supported for .png files only",
        ),
        (
            ["upscale", "{img}", "o.png", "--scale", "1e9", "--checkpoint", "{ck}"],
            "exceeds the limit",
        ),
        (
            ["upscale", "{img}", "{missing_dir}/o.png", "--scale", "2", "--checkpoint", "{ck}"],
            "missing_dir' does not exist",
        ),
        (
            ["upscale", "{img}", "o.xyz", "--scale", "2", "--checkpoint", "{ck}"],
            "unknown image format '.xyz'",
        ),
        (
            ["upscale", "{img}", "o.png", "--scale", "2", "--device", "bogus"],
            "--device must be a torch device such as cpu, cuda or cuda:1; got 'bogus'",
        ),
        (
            ["eval", "--checkpoint", "{ck}", "--data", "{set}", "--device", "xla"],
            "--device xla: no such device is available on this machine",
        ),
        (
            ["eval", "--checkpoint", "{ck}", "--data", "nowhere", "--scales", "2"],
            "--data folder 'nowhere' does not exist",
        ),
        (
            ["eval", "--checkpoint", "{ck}", "--data", "{set}", "--scales", "2,x"],
            "--scales must be",
        ),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(files, capsys, argv, message):
    subst = {
        "{ck}": str(files / "tiny.pt"),
        "{img}": str(files / "in.png"),
        "{broken}": str(files / "broken.png"),
        "{set}": str(files / "set"),
        "{missing_dir}/o.png": str(files / "missing_dir" / "o.png"),
    }
    code = main([subst.get(a, a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("scaleeq: error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_bench_quick(capsys):
    assert main(["bench", "--quick"]) == 0
    assert "shifted" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "scaleeq", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and "upscale" in proc.stdout


def test_export_then_upscale_in_onnxruntime_matches_pytorch(files, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    onnx_path, ck = files / "tiny.onnx", str(files / "tiny.pt")
    assert main(["export", str(onnx_path), "--checkpoint", ck, "--tile", "16", "--split"]) == 0
    assert "tiny.features.onnx" in capsys.readouterr().out
    assert (files / "tiny.features.onnx").is_file()
    args = ["upscale", str(files / "in.png"), "", "--scale", "2.5x1.5", "--bits", "16", "--quiet"]
    args[2] = str(files / "onnx.png")
    assert main([*args, "--onnx", str(onnx_path)]) == 0
    args[2] = str(files / "torch.png")
    assert main([*args, "--checkpoint", ck]) == 0
    from scaleeq.data import load_image

    a, b = load_image(files / "onnx.png"), load_image(files / "torch.png")
    assert a.shape == b.shape == (3, 20, 43)  # 13x17 by (1.5, 2.5): 19.5 and 42.5, halves up
    assert float((a - b).abs().max()) <= 2 / 65535  # 16-bit quantisation of outputs within 1e-4
    for extra, message in (
        (["--onnx", str(onnx_path), "--checkpoint", ck], "not both"),
        (["--onnx", str(files / "nothing.onnx")], "is not a file"),
        (["--onnx", str(onnx_path), "--tile", "8"], "fixed at export"),
    ):
        assert main([*args, *extra]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_a_one_line_error(files, capsys):
    code = main(["upscale", str(files / "in.png"), "o.png", "--scale", "2", "--device", "cuda"])
    err = capsys.readouterr().err
    assert (
        code == 2
        and err == "scaleeq: error: --device cuda: no such device is available on this machine\n"
    )


def test_the_cli_runs_cpu_models_channels_last_and_exports_them_as_stored(files):
    from scaleeq.cli import _load_model, _load_stored_model

    model = _load_model(str(files / "tiny.pt"), "cpu", quiet=True)
    convs = [
        m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)
    ]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert all(c.weight.stride()[1] == 1 for c in convs)  # channels innermost: not NCHW
    stored = _load_stored_model(str(files / "tiny.pt"), "cpu", quiet=True)
    assert all(m.weight.is_contiguous() for m in stored.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.slow  # 26 s: two exports; the fp16 graphs are covered in tests/test_onnx.py
def test_export_precision_fp16_then_upscale_runs_at_the_files_precision(files, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    onnx_path, ck = files / "tiny16.onnx", str(files / "tiny.pt")
    code = main(["export", str(onnx_path), "--checkpoint", ck, "--tile", "16", "--precision",
                 "fp16"])  # fmt: skip
    assert code == 0 and "fp16" in capsys.readouterr().out
    from scaleeq.onnx import OnnxUpscaler

    assert OnnxUpscaler(onnx_path).precision == "fp16"
    args = ["upscale", str(files / "in.png"), "", "--scale", "2.5x1.5", "--bits", "16", "--quiet"]
    args[2] = str(files / "torch16.png")
    assert main([*args, "--checkpoint", ck]) == 0
    from scaleeq.data import load_image

    ref = load_image(files / "torch16.png")
    for extra in ([], ["--precision", "fp16"], ["--precision", "auto"]):  # the file's precision
        args[2] = str(files / "onnx16.png")
        assert main([*args, "--onnx", str(onnx_path), *extra]) == 0
        out = load_image(files / "onnx16.png")
        assert out.shape == ref.shape == (3, 20, 43)
        psnr = float(10 * torch.log10(1 / (out.double() - ref.double()).square().mean()))
        assert psnr > 60  # test_onnx.FP16_DB: the fp16 graph within 60 dB of fp32 PyTorch
    for precision, hint in (("fp32", "export --precision fp32"), ("bf16", "fp32 or fp16")):
        assert main([*args, "--onnx", str(onnx_path), "--precision", precision]) == 2
        err = capsys.readouterr().err
        assert "precision chosen at export time (this file: fp16" in err and hint in err
