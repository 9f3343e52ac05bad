"""Build the architecture table of docs/retrofit.md from a run of tests/test_spandrel_zoo.py.

Runs the zoo tests (``--slow`` adds the ONNX and ``torch.compile`` checks, minutes per
architecture), reads pytest's JUnit XML, and writes one row per zoo case: whether each
acceptance check passed, failed, was documented as not applicable (xfail, with its reason) or
not run. Results: ``benchmarks/results/retrofit_zoo.json`` and the table between the markers
in ``docs/retrofit.md``. Nothing in the table is typed by hand.

    python benchmarks/retrofit_table.py            # default checks (about a minute)
    python benchmarks/retrofit_table.py --slow     # also ONNX and torch.compile
    python benchmarks/retrofit_table.py --slow --only "IPT or SAFMN"   # re-run some rows

``--only`` runs the cases that pytest's ``-k`` expression selects and keeps every other row
of the stored results as it was.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = {
    "test_retrofit_keeps_the_model_and_the_input_and_matches_the_cut": "retrofit, identity at init",
    "test_outputs_follow_the_size_rule_at_every_scale": "any scale",
    "test_a_batch_renders_as_its_samples_do": "eval batch",
    "test_a_training_step_reaches_the_first_convolution": "training step",
    "test_save_and_load_rebuild_through_spandrel": "save / load",
    "test_activation_checkpointing_gives_the_same_gradients": "checkpointing",
    "test_onnx_matches_eager": "ONNX",
    "test_torch_compile_matches_eager": "compile",
}
MARKS = {"passed": "yes", "failed": "**fails**", "xfail": "no", "skipped": "not run"}
START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"


def run(slow: bool, xml: Path, only: str | None = None) -> None:
    marker = "slow or not slow" if slow else "not slow"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "tests/test_spandrel_zoo.py", "-m", marker, f"--junitxml={xml}"]  # fmt: skip
    if only:
        cmd += ["-k", only]
    subprocess.run([*cmd, "-o", "junit_family=legacy"], cwd=ROOT, check=False)


def parse(xml: Path) -> dict[str, dict[str, dict[str, str]]]:
    rows: dict[str, dict[str, dict[str, str]]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        m = re.match(r"(\w+)\[(.+)\]$", case.get("name", ""))
        if not m or m.group(1) not in COLUMNS:
            continue
        test, cid = m.groups()
        state, reason = "passed", ""
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        for child in case:
            if child.tag == "skipped":
                msg = child.get("message", "")
                state = "xfail" if child.get("type") == "pytest.xfail" else "skipped"
                reason = msg.removeprefix("xfail").strip(": ")
            elif child.tag in ("failure", "error"):
                state, reason = "failed", child.get("message", "")[:200]
        rows.setdefault(cid, {})[test] = {"state": state, "reason": reason}
        if "graph_breaks" in props:  # recorded by the compile test (record_property)
            rows[cid][test]["graph_breaks"] = int(props["graph_breaks"])
            rows[cid][test]["break_reasons"] = props.get("break_reasons", "")
    return rows


def table(rows: dict[str, dict[str, dict[str, str]]]) -> str:
    heads = list(COLUMNS.values())
    lines = ["| case | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    notes: list[str] = []
    for cid in sorted(rows):
        cells = []
        for test in COLUMNS:
            r = rows[cid].get(test, {"state": "skipped", "reason": ""})
            cell = MARKS[r["state"]]
            if r["state"] == "passed" and "graph_breaks" in r:
                cell += f" ({r['graph_breaks']} breaks)"
                if r.get("break_reasons"):
                    notes.append(f"- {cid}, graph breaks: {r['break_reasons']}")
                    cell += f" [{len(notes)}]"
            if r["state"] in ("xfail", "failed") and r["reason"]:
                notes.append(f"- {cid}, {COLUMNS[test]}: {r['reason']}")
                cell += f" [{len(notes)}]"
            cells.append(cell)
        lines.append(f"| {cid} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes:", ""] + [f"{i}. {n[2:]}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slow", action="store_true", help="also the ONNX and compile checks")
    p.add_argument(
        "--xml",
        type=Path,
        nargs="+",
        help="use these JUnit XML files (e.g. one per family or per check) instead of running "
        "the tests; later files override earlier ones for the same case and check",
    )
    p.add_argument(
        "--only",
        metavar="EXPR",
        help="run only the cases this pytest -k expression selects and update their rows in "
        "the stored results (the other rows are kept)",
    )
    args = p.parse_args()
    xmls = args.xml
    if xmls is None:
        xmls = [Path(tempfile.mkdtemp()) / "zoo.xml"]
        run(args.slow, xmls[0], args.only)
    out = ROOT / "benchmarks" / "results" / "retrofit_zoo.json"
    rows: dict[str, dict[str, dict[str, str]]] = {}
    if args.only:
        rows = json.loads(out.read_text())
    for xml in xmls:
        for cid, tests in parse(xml).items():
            rows.setdefault(cid, {}).update(tests)
    out.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    doc = ROOT / "docs" / "retrofit.md"
    text = doc.read_text()
    a, b = text.index(START) + len(START), text.index(END)
    doc.write_text(text[:a] + "\n" + table(rows) + "\n" + text[b:])
    print(f"{len(rows)} cases -> {out.relative_to(ROOT)} and docs/retrofit.md")


if __name__ == "__main__":
    main()
