"""Summarise ablation runs of ``benchmarks/study.py``: the NK+AFE minus LIIF gap per scale.

Each argument is a ``study.py --out`` folder holding ``b-liif.json`` and ``d-nk-afe.json``
(trained with identical settings within the folder). Prints a Markdown table: for each folder
and benchmark set, ``PSNR-Y(d) - PSNR-Y(b)`` at every evaluated scale, and each variant's gain
over bicubic at x6 and x8.

    python benchmarks/study_ablations.py benchmarks/results/ablation_base \\
        benchmarks/results/ablation_noskip [...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _psnr(record: dict, set_name: str, method: str) -> dict[float, float]:
    return {
        r["scale"]: r["psnr_y"]
        for r in record["rows"]
        if r["set"] == set_name and r["method"] == method
    }


def table(folders: list[Path], sets: tuple[str, ...] = ("Set5", "Set14")) -> str:
    rows = []
    scales: list[float] = []
    for folder in folders:
        b = json.loads((folder / "b-liif.json").read_text())
        d = json.loads((folder / "d-nk-afe.json").read_text())
        for set_name in sets:
            pb, pd = _psnr(b, set_name, "model"), _psnr(d, set_name, "model")
            bic = _psnr(b, set_name, "bicubic")
            scales = sorted(pb)
            rows.append((folder.name, set_name, pb, pd, bic))
    head = "| run | set | " + " | ".join(f"x{s:g}" for s in scales)
    head += " | b gain x6 / x8 | d gain x6 / x8 |"
    lines = [head, "|---|---|" + "---:|" * (len(scales) + 2)]
    for name, set_name, pb, pd, bic in rows:
        gaps = " | ".join(f"{pd[s] - pb[s]:+.2f}" for s in scales)
        gb = " / ".join(f"{pb[s] - bic[s]:+.2f}" for s in (6.0, 8.0))
        gd = " / ".join(f"{pd[s] - bic[s]:+.2f}" for s in (6.0, 8.0))
        lines.append(f"| {name} | {set_name} | {gaps} | {gb} | {gd} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folders", nargs="+", type=Path)
    args = p.parse_args(argv)
    print(table(args.folders), end="")


if __name__ == "__main__":
    main()
