"""benchmarks/gpu_check.py cannot rot: its --dry rehearsal runs on the CPU in the default run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _dry(tmp_path, *flags: str) -> dict:
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry", "--out", str(tmp_path), *flags],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "gpu_cpu_dry.md").read_text().startswith("### GPU check: cpu-dry")
    return json.loads((tmp_path / "gpu_cpu_dry.json").read_text())


def test_dry_run_passes_every_cuda_test_and_measures_every_section(tmp_path):
    report = _dry(tmp_path)
    assert report["tests"]["counts"]["passed"] >= 8 and "failed" not in report["tests"]["counts"]
    m = report["measurements"]
    for section in ("aggregation_train", "aggregation_inference", "rendering",
                    "training_throughput", "adaptive_conv"):  # fmt: skip
        assert section in m and "error" not in m[section], m.get(section)
    assert set(m["aggregation_train"]) >= {"triton", "shifted", "reference"}
    assert m["training_throughput"]["star_vs_plain"] > 0
