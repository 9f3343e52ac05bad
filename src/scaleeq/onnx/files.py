"""The contract between an exported file and its runtime: the default tile, the metadata key
and format version of the export settings stored in the file, the precisions a file can have,
the split-export file name, and the import of the optional ``onnx`` extra's packages."""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import atomic_write

__all__ = [
    "DEFAULT_TILE",
    "FORMAT_VERSION",
    "INSTALL_HINT",
    "META_KEY",
    "PRECISIONS",
    "default_tile",
    "features_path",
    "get_meta",
    "lean_session_options",
    "require",
    "save_models",
    "set_meta",
]

#: Tile (window) size of a one-graph export, whose every run computes the backbone's features
#: again (so tiles are large), and the largest default tile of any export; ``(th, tw)`` HR
#: pixels.
DEFAULT_TILE = (256, 256)
#: How to install what export and runtime need.
INSTALL_HINT = "pip install 'scaleeq[onnx]' (onnx, onnxscript, onnxruntime)"
#: Metadata key of the export settings (JSON) in an exported file.
META_KEY = "scaleeq"
#: Version of those settings.
FORMAT_VERSION = 1
#: The precisions of an exported file (metadata ``"precision"``; a file without the key, from
#: before it was recorded, is ``"fp32"``).
PRECISIONS = ("fp32", "fp16")


def require(module: str, what: str) -> Any:
    """Import ``module`` for ``what``, or an ImportError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{what} needs the {module!r} package: {INSTALL_HINT}") from err


def features_path(path: str | os.PathLike) -> Path:
    """The features file that goes with the render file ``path`` of a split export
    (``model.onnx`` -> ``model.features.onnx``)."""
    path = Path(path)
    return path.with_name(path.stem + ".features" + (path.suffix or ".onnx"))


def default_tile(window_pixels: int) -> tuple[int, int]:
    """The default render tile of a graph that renders from features (a split export's render
    graph, a bare upsampler): a square of half the upsampler's own window budget
    (``default_window_pixels``, what :func:`scaleeq.upscale` renders at once), its side a
    multiple of 8 in ``[16, 256]``. onnxruntime holds about twice as much per output pixel as
    eager PyTorch (every intermediate is a fresh buffer), so half the pixels give about the
    same peak memory as :func:`scaleeq.upscale` (docs/benchmarks.md, "ONNX export").

    >>> default_tile(2**21 // 256)  # the default upsampler: latent width 256
    (64, 64)
    >>> default_tile(2**21 // 64)
    (128, 128)
    """
    side = math.isqrt(max(int(window_pixels), 1) // 2) // 8 * 8
    side = min(max(side, 16), DEFAULT_TILE[0])
    return side, side


def lean_session_options(ort: Any) -> Any:
    """``onnxruntime.SessionOptions`` that keep memory near what a run needs: no CPU memory
    arena (it keeps every size it ever allocated) and no memory pattern (planned for one input
    size). :class:`~scaleeq.onnx.OnnxUpscaler` uses them unless given its own. Freed blocks
    then go back to ``malloc``; with :func:`scaleeq.allocator.keep_freed_memory` (which the
    ``scaleeq`` command applies) glibc reuses them instead of faulting in new pages."""
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    return options


def set_meta(model: Any, meta: dict[str, Any]) -> None:
    """Store the export settings ``meta`` in the ``onnx.ModelProto`` ``model`` (key
    :data:`META_KEY`, JSON), replacing what metadata it had."""
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)


def get_meta(props: Mapping[str, str], name: str) -> dict[str, Any]:
    """The export settings in a file's metadata ``props`` (an ``onnx.ModelProto``'s
    ``metadata_props`` as a dict, or onnxruntime's ``custom_metadata_map``); ``name`` is the
    file, for messages.

    Raises:
        ValueError: no scaleeq metadata, or metadata that is not a JSON object.
    """
    if META_KEY not in props:
        raise ValueError(
            f"{name!r} was not written by scaleeq.onnx.export_onnx (no {META_KEY!r} metadata)"
        )
    try:
        meta = json.loads(props[META_KEY])
    except ValueError as err:
        raise ValueError(f"{name!r} has damaged scaleeq metadata: {err}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{name!r} has damaged scaleeq metadata: not a JSON object")
    return meta


def save_models(onnx: Any, models: list[tuple[Any, Path]]) -> Path:
    """Write each ``(ModelProto, path)`` atomically, in order (a split export's features file
    first), after all of them have been made and checked; return the last path."""
    for model, path in models:
        atomic_write(path, lambda tmp, m=model: onnx.save_model(m, tmp))
    return models[-1][1]
