"""In-process broadcast of newly committed events to live readers (the SSE stream).

Why this module exists: the store is the source of truth and the cursor (``seq``), but
readers that want events *as they happen* should not poll it. The runtime calls
``EventFeed.publish`` right after each commit; every open subscription gets the events in
commit order. It lives in ``http`` (its one reader is the SSE stream) so that the runtime
imports http to publish and http never imports the runtime.

Back-pressure rule: publishing never blocks and never waits for a reader. Each subscriber
has a bounded buffer; a subscriber that falls that far behind is dropped. It still receives
what was buffered, then ``SubscriberDroppedError`` tells it to reconnect and resume from the
store with its last seq, so nothing is lost, only re-read. ``close()`` (shutdown) ends every
subscription at once, without draining.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

from watcher.core.ports import StoredEvent

DEFAULT_MAX_QUEUE: Final = 1000

_OPEN, _DROPPED, _CLOSED = "open", "dropped", "closed"


class SubscriberDroppedError(Exception):
    """The subscriber fell too far behind; reconnect and resume from the store."""


class Subscription:
    """One reader's view of the feed: an async iterator of StoredEvent.

    Iteration ends (StopAsyncIteration) when the feed or the subscription is closed, and
    raises SubscriberDroppedError after the buffer is drained if the reader was dropped.
    """

    def __init__(self, max_queue: int) -> None:
        self._buffer: deque[StoredEvent] = deque()
        self._max = max_queue
        self._state = _OPEN
        self._wakeup = asyncio.Event()

    @property
    def closed(self) -> bool:
        """True once no more events will arrive (closed or dropped)."""
        return self._state != _OPEN

    @property
    def dropped(self) -> bool:
        return self._state == _DROPPED

    def _offer(self, event: StoredEvent) -> None:
        if self._state != _OPEN:
            return
        if len(self._buffer) >= self._max:
            self._state = _DROPPED
        else:
            self._buffer.append(event)
        self._wakeup.set()

    def close(self) -> None:
        """End this subscription now; buffered events are discarded."""
        self._state = _CLOSED
        self._buffer.clear()
        self._wakeup.set()

    async def next(self, timeout: float | None = None) -> StoredEvent | None:
        """The next event; None when ``timeout`` passes first (use it for heartbeats).

        Raises StopAsyncIteration once closed and SubscriberDroppedError once dropped and
        drained.
        """
        while True:
            if self._state == _CLOSED:
                raise StopAsyncIteration
            if self._buffer:
                return self._buffer.popleft()
            if self._state == _DROPPED:
                raise SubscriberDroppedError("event feed subscriber fell behind; reconnect")
            self._wakeup.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                return None

    def __aiter__(self) -> AsyncIterator[StoredEvent]:
        return self

    async def __anext__(self) -> StoredEvent:
        while True:  # without a timeout next() never answers None; the loop only says so
            event = await self.next()
            if event is not None:
                return event


class EventFeed:
    """Fan-out of committed events to any number of subscriptions."""

    def __init__(self, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._max_queue = max_queue
        self._subscribers: set[Subscription] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, events: Sequence[StoredEvent]) -> None:
        """Hand committed events to every subscriber; never blocks, never raises for readers."""
        if self._closed or not events:
            return
        for sub in list(self._subscribers):
            for event in events:
                sub._offer(event)  # the feed and its subscriptions are one unit
            if sub.closed:
                self._subscribers.discard(sub)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Subscribe for the duration of the block; events published after entry arrive."""
        sub = Subscription(self._max_queue)
        if self._closed:
            sub.close()
        else:
            self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            if not sub.closed:
                sub.close()

    def close(self) -> None:
        """End every subscription (shutdown); later subscriptions start closed."""
        self._closed = True
        subs, self._subscribers = self._subscribers, set()
        for sub in subs:
            sub.close()
