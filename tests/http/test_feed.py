"""EventFeed: fan-out, bounded buffers that drop slow readers, and shutdown."""

from __future__ import annotations

import asyncio

import pytest

from tests.http.fakes import make_event
from watcher.core.ports import StoredEvent
from watcher.http.feed import EventFeed, SubscriberDroppedError


def stored(*seqs: int) -> list[StoredEvent]:
    return [StoredEvent(seq=s, event=make_event(s)) for s in seqs]


async def test_every_subscriber_gets_events_in_order() -> None:
    feed = EventFeed()
    async with feed.subscribe() as a, feed.subscribe() as b:
        feed.publish(stored(1, 2))
        feed.publish(stored(3))
        assert [(await a.next(0.1)).seq for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
        assert [(await b.next(0.1)).seq for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
    assert feed.subscriber_count == 0


async def test_next_times_out_with_none() -> None:
    feed = EventFeed()
    async with feed.subscribe() as sub:
        assert await sub.next(timeout=0.01) is None


async def test_waiting_reader_wakes_on_publish() -> None:
    feed = EventFeed()
    async with feed.subscribe() as sub:
        waiter = asyncio.create_task(sub.next(timeout=2))
        await asyncio.sleep(0)
        feed.publish(stored(7))
        got = await waiter
        assert got is not None and got.seq == 7


async def test_slow_subscriber_is_dropped_after_draining_and_publish_never_blocks() -> None:
    feed = EventFeed(max_queue=2)
    async with feed.subscribe() as slow, feed.subscribe() as fast:
        feed.publish(stored(1, 2))
        assert [(await fast.next(0.1)).seq for _ in range(2)] == [1, 2]  # type: ignore[union-attr]
        feed.publish(stored(3, 4))  # returns at once although slow reads nothing
        assert slow.dropped and not fast.dropped
        assert feed.subscriber_count == 1  # the slow one is gone from the fan-out
        assert [(await fast.next(0.1)).seq for _ in range(2)] == [3, 4]  # type: ignore[union-attr]
        assert [(await slow.next(0.1)).seq for _ in range(2)] == [1, 2]  # type: ignore[union-attr]
        with pytest.raises(SubscriberDroppedError):
            await slow.next(0.1)


async def test_close_ends_iteration_and_later_subscriptions() -> None:
    feed = EventFeed()
    async with feed.subscribe() as sub:
        feed.publish(stored(1))
        reader = asyncio.create_task(_collect(sub))
        await asyncio.sleep(0)
        feed.close()
        assert await asyncio.wait_for(reader, 1) in ([], [1])
    async with feed.subscribe() as late:
        assert late.closed
        with pytest.raises(StopAsyncIteration):
            await late.next(0.1)
    feed.publish(stored(2))  # after close: ignored, no error


async def _collect(sub: object) -> list[int]:
    return [e.seq async for e in sub]  # type: ignore[attr-defined]


def test_max_queue_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        EventFeed(max_queue=0)
