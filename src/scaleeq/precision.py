"""Compute precision of inference: the one place that names the choices and picks ``"auto"``.

``precision`` is one of:

- ``"fp32"``: float32 throughout (the default);
- ``"bf16"`` / ``"fp16"``: the model's matrix products and convolutions run under
  ``torch.autocast`` in bfloat16 / float16 (weights stay as they are); the scale, the render
  plan and the output sizes are computed before and outside it, in float64 / integers, so they
  do not change with precision, and the output is returned in the input's dtype;
- ``"auto"``: ``"bf16"`` where the hardware computes bfloat16 natively (a CPU with the
  ``avx512_bf16`` or ``amx_bf16`` instructions, a CUDA device of compute capability 8.0 or
  newer), else ``"fp32"``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = [
    "PRECISIONS",
    "autocast",
    "check_precision",
    "native_bf16",
    "resolve_precision",
    "select_precision",
]

#: The accepted values of every ``precision`` argument.
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively (see the module doc)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    return False


def check_precision(precision: object, name: str = "precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS` (``"auto"`` kept as it is).

    Raises:
        ValueError: it is not (the message names ``name`` and the choices).
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def select_precision(precision: str, device: torch.device | str) -> str:
    """The precision that runs for ``precision`` on ``device``: ``precision`` checked, with
    ``"auto"`` replaced by what it picks there.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if check_precision(precision) == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


#: Former name of :func:`select_precision`, still importable.
resolve_precision = select_precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[str]:
    """Run the block at ``precision`` on ``device`` (``torch.autocast`` for bf16 / fp16; nothing
    for fp32); yields the precision it selected (:func:`select_precision`)."""
    selected = select_precision(precision, device)
    if selected == "fp32":
        yield selected
        return
    with torch.autocast(torch.device(device).type, dtype=_DTYPES[selected]):
        yield selected
