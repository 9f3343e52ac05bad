"""The contract between an exported file and its runtime: the default tile, the metadata key
and format version of the export settings stored in the file, the split-export file name, and
the import of the optional ``onnx`` extra's packages."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_TILE", "FORMAT_VERSION", "INSTALL_HINT", "META_KEY", "features_path", "require"]

#: Default tile (window) size of an exported graph, ``(th, tw)`` HR pixels.
DEFAULT_TILE = (256, 256)
#: How to install what export and runtime need.
INSTALL_HINT = "pip install 'scaleeq[onnx]' (onnx, onnxscript, onnxruntime)"
#: Metadata key of the export settings (JSON) in an exported file.
META_KEY = "scaleeq"
#: Version of those settings.
FORMAT_VERSION = 1


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
