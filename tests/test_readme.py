"""The README's Python examples run as written and give the shapes their comments state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    monkeypatch.chdir(tmp_path)  # the examples write files
    code = BLOCKS[index]
    namespace: dict = {}
    exec(compile(code, f"README.md[python block {index}]", "exec"), namespace)
    # every "# (B, C, H, W)" comment on an assignment states the shape of what was assigned
    checked = 0
    for line in code.splitlines():
        m = re.match(r"(\w+) = (.*?)\s+# (?:[\w-]+: )?\((\d+), (\d+), (\d+), (\d+)\)", line)
        if m:
            value = eval(m.group(2), namespace)  # re-evaluate that line's expression
            assert tuple(value.shape) == tuple(int(g) for g in m.groups()[2:]), line
            checked += 1
    assert checked >= 1
