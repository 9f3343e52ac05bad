"""A thread-safe least-recently-used cache bounded by bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["ByteLRU"]


class ByteLRU:
    """LRU mapping whose values carry a size in bytes; the total stays at most ``cap`` bytes.

    A value larger than the whole cap is not stored (``put`` returns False). ``hits``,
    ``misses`` and ``evictions`` count what happened; ``nbytes`` is the current total.
    """

    def __init__(self, cap: int, name: str = "cache") -> None:
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ValueError(f"{name} cap must be a non-negative number of bytes, got {cap!r}")
        self.cap = cap
        self.name = name
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: Hashable) -> Any | None:
        """The value for ``key`` (now the most recent), or ``None``."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> bool:
        """Store ``value`` of ``nbytes`` bytes, evicting the least recent entries to fit."""
        if nbytes > self.cap:
            return False
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            while self._data and self.nbytes + nbytes > self.cap:
                _, (_, size) = self._data.popitem(last=False)
                self.nbytes -= size
                self.evictions += 1
            self._data[key] = (value, nbytes)
            self.nbytes += nbytes
            return True

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def clear(self) -> None:
        """Drop every entry (the counters are kept)."""
        with self._lock:
            self._data.clear()
            self.nbytes = 0

    def stats(self) -> dict[str, int]:
        """``entries``, ``bytes``, ``cap``, ``hits``, ``misses``, ``evictions``."""
        return {
            "entries": len(self._data),
            "bytes": self.nbytes,
            "cap": self.cap,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }
