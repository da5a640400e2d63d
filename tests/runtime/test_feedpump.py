"""The feed pump outlives a failed store read (bench-ha at 10,000 workflows: a read that
waited past the PostgreSQL pool's timeout crashed the pump, a root task, and with it the
daemon) and still publishes every event once, in order."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from tests.store.factories import make_event
from watcher.core.ports import StoredEvent
from watcher.http.feed import EventFeed
from watcher.runtime import feedpump
from watcher.runtime.feedpump import FeedPump
from watcher.store.memory import MemoryStore


class FlakyStore(MemoryStore):
    """A store whose next ``fail`` event reads raise, like a pool timeout."""

    fail = 0

    async def recent_events(self, *, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]:
        if self.fail:
            self.fail -= 1
            raise TimeoutError("couldn't get a connection after 10.00 sec")
        return await super().recent_events(after_seq=after_seq, limit=limit)


async def test_a_failed_read_is_retried_and_nothing_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feedpump, "RETRY_S", 0.01)
    store = FlakyStore()
    feed = EventFeed()
    pump = FeedPump(feed)
    await pump.start_after_tail(store)
    task = asyncio.create_task(pump.run(store))
    async with feed.subscribe() as sub:
        with capture_logs() as logs:
            await store.commit_poll("wf:a", None, [make_event("e1")], [])
            store.fail = 2
            pump.wake()
            await store.commit_poll("wf:a", None, [make_event("e2")], [])
            pump.wake()
            got = [await sub.next(timeout=5) for _ in range(2)]
            await asyncio.sleep(0.05)
        assert not task.done(), "the pump stopped"
        assert [e.event.dedup_key for e in got if e is not None] == ["e1", "e2"]
        events = [e["event"] for e in logs]
        assert events.count("feed.read_failed") == 1 and "feed.read_recovered" in events
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
