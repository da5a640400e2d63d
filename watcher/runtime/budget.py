"""A request budget per API host, shared by every poll job (SPEC.md section 5).

A token bucket per host (default 10 requests/s). When callers must wait, those polling an
active workflow go before idle ones: under pressure the idle targets are the ones that slip.
The priority is an argument of ``acquire`` (``core.ports.Priority``), passed down by the
poller through each client call.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from watcher.core.ports import Priority

__all__ = ["ACTIVE", "IDLE", "HostBudget", "Priority"]

ACTIVE = Priority.ACTIVE
IDLE = Priority.IDLE


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    updated: float
    waiters: list[tuple[int, int, asyncio.Future[None]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class HostBudget:
    """Token buckets keyed by host; ``acquire`` waits for a token, active callers first."""

    def __init__(
        self,
        rate: float = 10.0,
        burst: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._capacity = burst if burst and burst >= 1 else max(1.0, rate)
        self._monotonic = monotonic
        self._buckets: dict[str, _Bucket] = {}
        self._order = itertools.count()

    def _bucket(self, host: str) -> _Bucket:
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = _Bucket(self._rate, self._capacity, self._capacity, self._monotonic())
            self._buckets[host] = bucket
        return bucket

    def _refill(self, bucket: _Bucket) -> None:
        now = self._monotonic()
        bucket.tokens = min(bucket.capacity, bucket.tokens + (now - bucket.updated) * bucket.rate)
        bucket.updated = now

    async def acquire(self, host: str, *, priority: Priority = Priority.IDLE) -> None:
        bucket = self._bucket(host)
        self._refill(bucket)
        if not bucket.waiters and bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(bucket.waiters, (int(priority), next(self._order), future))
        self._schedule(bucket)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                bucket.tokens += 1  # granted just as we were cancelled: give it back
            raise

    def _schedule(self, bucket: _Bucket) -> None:
        if bucket.timer is not None or not bucket.waiters:
            return
        wait = max(0.0, (1 - bucket.tokens) / bucket.rate)
        bucket.timer = asyncio.get_running_loop().call_later(wait, self._release, bucket)

    def _release(self, bucket: _Bucket) -> None:
        bucket.timer = None
        self._refill(bucket)
        while bucket.waiters and bucket.tokens >= 1:
            _, _, future = heapq.heappop(bucket.waiters)
            if future.done():
                continue  # its caller was cancelled
            bucket.tokens -= 1
            future.set_result(None)
        self._schedule(bucket)

    def waiting(self, host: str) -> int:
        return sum(1 for *_, f in self._bucket(host).waiters if not f.done())
