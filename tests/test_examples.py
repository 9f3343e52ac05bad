"""The example training scripts run end to end (tiny settings) and resume."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import scaleeq

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ex")
    g = torch.Generator().manual_seed(0)
    for sub, n, size in (("train", 3, 80), ("bench/Tiny/HR", 2, 36)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((torch.rand(size, size + 4, 3, generator=g) * 255).byte().numpy()).save(
                root / sub / f"{i}.png"
            )
    return root


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(EXAMPLES / script), "--no-progress", "--device", "cpu", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("script", ["train_edsr_star.py", "train_swinir_star.py", "train_eqsr.py"])
def test_demo_preset_scripts_train_evaluate_and_save(folders, tmp_path, script):
    """Two steps, evaluation and files; EDSR* then reruns to four steps, resuming at step 2."""
    out = tmp_path / "run"
    common = ["--preset", "demo", "--data", str(folders / "train"),
              "--eval-data", str(folders / "bench"), "--eval-scales", "2,3",
              "--batch", "2", "--patch", "16", "--out", str(out)]  # fmt: skip
    proc = _run(script, *common, "--steps", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {(r["set"], r["method"], r["scale"]) for r in rows} == {
        ("Tiny", m, s) for m in ("model", "bicubic") for s in (2.0, 3.0)
    }
    assert (out / "train_state.pt").exists()
    if script != "train_eqsr.py":
        asr = scaleeq.load(out / "model.pt")
        assert asr(torch.rand(1, 3, 8, 8), scale=2.5).shape == (1, 3, 20, 20)
    if script == "train_edsr_star.py":  # rerunning resumes from the training state
        proc = _run(script, *common, "--steps", "4")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "resumed from" in proc.stdout and "at step 2" in proc.stdout
        assert torch.load(out / "train_state.pt", weights_only=False)["step"] == 4


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    """In this process (the error comes before any work; a subprocess would cost seconds)."""
    script = EXAMPLES / "train_edsr_star.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--no-progress", "--out", str(tmp_path / "x")])
    monkeypatch.syspath_prepend(str(EXAMPLES))
    with pytest.raises(SystemExit, match="--data is required"):
        runpy.run_path(str(script), run_name="__main__")
    assert not (tmp_path / "x").exists()
