"""Per-call overhead of new code: a retrofitted EDSR-baseline forward, old vs new code.

Times ``retrofit(EDSR.from_preset("baseline", upscale=2))`` at a 48x48 LR input, x3 (forward,
no gradients; ``scaleeq.upscale``; and forward+backward at the training call: per-sample scales
and a 48x48 window), with this checkout's ``src`` and with another checkout's ``src``
(``--baseline-src``, or ``--baseline-commit``: a temporary ``git worktree`` of that commit), in
alternating subprocesses so both see the same machine state. Reports medians and the ratio
new / old. Used for the render plan (issue 11) and the reliability checks
(``benchmarks/reliability_overhead.py``, issue 12).

Usage::

    python benchmarks/plan_overhead.py --baseline-commit 5d06166 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, statistics, sys, time, torch
sys.path.insert(0, sys.argv[1])
import scaleeq
from scaleeq.models import EDSR
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
asr = scaleeq.retrofit(EDSR.from_preset("baseline", upscale=2))
lr = torch.rand(1, 3, 48, 48)
batch = torch.rand(4, 3, 48, 48)
scale = torch.tensor([2.0, 3.0, 3.3, 4.0], dtype=torch.float64)
window = (torch.tensor([0, 10, 20, 30]), torch.tensor([5, 0, 7, 9]), 48, 48)
def infer():
    with torch.no_grad():
        asr(lr, scale=3.0)
def tiled():
    scaleeq.upscale(asr, lr, scale=3.0)
def train():
    asr(batch, scale=scale, window=window).mean().backward()
out = {"file": scaleeq.__file__}
n = int(sys.argv[3])
for name, fn, reps in (("forward_x3", infer, n), ("upscale_x3", tiled, n),
                       ("train_step", train, max(3, n // 3))):
    for _ in range(2):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    out[name] = statistics.median(ts)
print(json.dumps(out))
"""


CASES = ("forward_x3", "upscale_x3", "train_step")


@contextlib.contextmanager
def baseline_checkout(commit: str):
    """A temporary ``git worktree`` of ``commit`` (removed afterwards); yields its ``src``."""
    with tempfile.TemporaryDirectory(prefix="scaleeq-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        git = ["git", "-C", str(REPO)]
        subprocess.run([*git, "worktree", "add", "--detach", str(tree), commit], check=True)
        try:
            yield str(tree / "src")
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=False)


def main(argv: list[str] | None = None, *, description: str | None = None) -> dict:
    p = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
    base = p.add_mutually_exclusive_group(required=True)
    base.add_argument("--baseline-src", help="src folder of the checkout to compare")
    base.add_argument("--baseline-commit", help="commit to compare (a temporary git worktree)")
    p.add_argument(
        "--new-commit",
        help="time this commit as 'new' (a temporary git worktree) instead of this checkout's "
        "src, which may hold uncommitted work",
    )
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (processes each)")
    p.add_argument("--repeats", type=int, default=15, help="timed calls per process")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        old = args.baseline_src or stack.enter_context(baseline_checkout(args.baseline_commit))
        new = str(REPO / "src")
        if args.new_commit:
            new = stack.enter_context(baseline_checkout(args.new_commit))
        return _compare(args, new, old)


def _compare(args: argparse.Namespace, new_src: str, baseline_src: str) -> dict:
    sources = {"new": new_src, "old": baseline_src}
    runs: dict[str, list[dict]] = {"new": [], "old": []}
    for _ in range(args.rounds):
        for label in ("old", "new"):
            res = subprocess.run(
                [sys.executable, "-c", CHILD, sources[label], str(args.threads), str(args.repeats)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            runs[label].append(json.loads(res.stdout.strip().splitlines()[-1]))
    result: dict = {"machine": platform.processor() or platform.machine(), "threads": args.threads}
    for key in ("baseline_commit", "new_commit"):
        if getattr(args, key):
            result[key] = getattr(args, key)
    for case in CASES:
        old = statistics.median(r[case] for r in runs["old"])
        new = statistics.median(r[case] for r in runs["new"])
        result[case] = {"old_s": old, "new_s": new, "ratio_new_over_old": new / old}
    print(f"{'case':<12} {'old ms':>9} {'new ms':>9} {'new/old':>8}")
    for case in CASES:
        r = result[case]
        print(
            f"{case:<12} {1e3 * r['old_s']:>9.1f} {1e3 * r['new_s']:>9.1f} "
            f"{r['ratio_new_over_old']:>8.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
