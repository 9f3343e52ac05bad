"""CPU allocator setting for long inference runs: keep freed memory instead of returning it.

glibc's ``malloc`` serves every large block (above a threshold that starts at 128 KiB and
grows to at most 32 MiB) with a fresh ``mmap``, and gives freed memory at the top of its heap
back to the OS once more than twice that threshold is free. A render allocates and frees the
same large temporaries for every tile and every block, so each one comes back as new pages
that fault in on first touch: on this project's 2-core machine that is about a quarter of
``scaleeq.upscale``'s time (benchmarks/roofline.py, "new+malloc"). :func:`keep_freed_memory`
raises both limits for the process, so freed blocks are reused; the price is that the process
keeps up to ``trim_bytes`` of freed memory instead of returning it (its peak is unchanged).

It changes a process-wide setting, so the library never calls it on import; the ``scaleeq``
command calls it for its own process (``upscale``, ``eval``, ``bench``, ``serve``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

from ._checks import check_int

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_MAX = 32 * 2**20  # glibc refuses a larger mmap threshold (HEAP_MAX_SIZE / 2 on 64-bit)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory(*, trim_bytes: int = 2**30, mmap_bytes: int = _MMAP_MAX) -> bool:
    """Tell glibc's allocator to keep up to ``trim_bytes`` of freed memory and to serve blocks
    up to ``mmap_bytes`` from its heap (see the module doc).

    Args:
        trim_bytes: freed memory at the top of the heap kept before it is returned to the OS.
        mmap_bytes: blocks up to this size come from the heap, not a fresh ``mmap``
            (at most 32 MiB, glibc's limit).

    Returns:
        ``True`` if the allocator took both settings; ``False`` where there is no glibc
        ``mallopt`` (macOS, Windows, musl), which leaves the process as it was.

    Raises:
        ValueError: a size that is not a positive int, or ``mmap_bytes`` above 32 MiB.
    """
    check_int(trim_bytes, "trim_bytes")
    check_int(mmap_bytes, "mmap_bytes")
    if mmap_bytes > _MMAP_MAX:
        raise ValueError(f"mmap_bytes must be at most {_MMAP_MAX} (32 MiB), got {mmap_bytes}")
    libc = _libc()
    if libc is None:
        return False
    ok_mmap = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_bytes))
    ok_trim = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(min(trim_bytes, 2**31 - 1)))
    return bool(ok_mmap and ok_trim)
