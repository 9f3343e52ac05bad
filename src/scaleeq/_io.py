"""Atomic file writes: the one place scaleeq writes files that must never be half-written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "check_target"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_target(path: str | os.PathLike) -> Path:
    """Return the folder of ``path`` if a file can be written there; else ``ValueError``:
    ``path`` is a directory, or its folder does not exist (ask before long work)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: the folder {str(folder)!r} does not exist")
    return folder


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, fsync it, rename it over
    ``path``: the file appears complete or not at all, and an old file survives a failure.

    The file gets the permissions an ordinary ``open(path, "w")`` would (``0o666`` less the
    umask), not the private ``0o600`` of temporary files.

    Raises:
        ValueError: ``path`` is a directory, or its folder does not exist.
    """
    path = Path(path)
    folder = check_target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
