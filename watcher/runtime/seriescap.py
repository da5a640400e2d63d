"""Which workflows and targets may have metric series of their own (issue 12.3).

One model for every per-thing series: at most ``limit`` keys hold series at a time, first
come first served; a key turned away is counted once in a ``dropped`` counter (once per
stay outside: released and turned away again, it counts again). A key that leaves (a
workflow ended, a target removed) frees its slot for the next one that asks. No eviction:
a series that comes and goes with load would read as resets and gaps in every graph.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class _Count(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class SeriesCap(Generic[K]):
    """Admission of keys to their own series, bounded by ``limit``."""

    def __init__(self, limit: int, dropped: _Count) -> None:
        self.limit = limit
        self._dropped = dropped
        self._admitted: set[K] = set()
        self._omitted: set[K] = set()  # turned away and already counted

    def admit(self, key: K) -> bool:
        """True when ``key`` has (or now gets) series; else it is counted once."""
        if key in self._admitted:
            return True
        if len(self._admitted) < self.limit:
            self._omitted.discard(key)
            self._admitted.add(key)
            return True
        if key not in self._omitted:
            self._omitted.add(key)
            self._dropped.inc()
        return False

    def release(self, key: K) -> bool:
        """Forget ``key``; True when it held series (the caller removes them)."""
        self._omitted.discard(key)
        if key in self._admitted:
            self._admitted.discard(key)
            return True
        return False

    def __contains__(self, key: object) -> bool:
        return key in self._admitted
