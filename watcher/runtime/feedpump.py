"""The feed pump: the root task that publishes committed events to live SSE readers.

Why this module exists: commits only wake the pump; the pump reads the store after its
cursor and publishes in store order (with seqs) into ``watcher.http.feed.EventFeed``, so
a reader never sees an event the store does not hold, nor one out of order.

A read that fails (a shared database busy past the pool's timeout, or restarting) is
retried from the same cursor: nothing is skipped, and the daemon does not stop over it.
"""

from __future__ import annotations

import asyncio

import structlog

from watcher.core.ports import Store
from watcher.http.feed import EventFeed

BATCH = 100  # events per read; thousands of events let polls run between batches
RETRY_S = 1.0  # after a failed read

log = structlog.get_logger(__name__)


class FeedPump:
    """Store -> EventFeed, woken after each commit."""

    def __init__(self, feed: EventFeed) -> None:
        self.feed = feed
        self._cursor = 0
        self._wake = asyncio.Event()

    async def start_after_tail(self, store: Store) -> None:
        """Publish only what is committed from now on (readers replay older events)."""
        tail = await store.recent_events(limit=1)
        self._cursor = tail[-1].seq if tail else 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, store: Store) -> None:
        failing = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._pump(store)
            except Exception as exc:  # see the module docstring
                if not failing:
                    log.warning("feed.read_failed", error=type(exc).__name__)
                failing = True
                self._wake.set()
                await asyncio.sleep(RETRY_S)
                continue
            if failing:
                log.info("feed.read_recovered")
            failing = False

    async def _pump(self, store: Store) -> None:
        while True:
            batch = await store.recent_events(after_seq=self._cursor, limit=BATCH)
            if not batch:
                return
            self._cursor = batch[-1].seq
            self.feed.publish(batch)
            await asyncio.sleep(0)
