"""Do the reliability checks (issue 12) cost time? ``scaleeq.upscale`` and a training step,
this code against the commit before the reliability work, in alternating processes.

The comparison itself is ``benchmarks/plan_overhead.py`` (same cases, same method); this
script fixes the baseline (``cb46805``, the last commit before the image I/O, size guard and
checkpoint integrity work) and the result file.

Usage::

    python benchmarks/reliability_overhead.py [--new-commit HEAD] \\
        [--json benchmarks/results/reliability_overhead_cpu.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plan_overhead

BASELINE = "cb46805"


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("--baseline") for a in argv):
        argv = ["--baseline-commit", BASELINE, *argv]
    return plan_overhead.main(argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
