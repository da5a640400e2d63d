"""The feed pump: the root task that publishes committed events to live SSE readers.

Why this module exists: commits only wake the pump; the pump reads the store after its
cursor and publishes in store order (with seqs) into ``watcher.http.feed.EventFeed``, so
a reader never sees an event the store does not hold, nor one out of order.
"""

from __future__ import annotations

import asyncio

from watcher.core.ports import Store
from watcher.http.feed import EventFeed

BATCH = 100  # events per read; thousands of events let polls run between batches


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
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                batch = await store.recent_events(after_seq=self._cursor, limit=BATCH)
                if not batch:
                    break
                self._cursor = batch[-1].seq
                self.feed.publish(batch)
                await asyncio.sleep(0)
