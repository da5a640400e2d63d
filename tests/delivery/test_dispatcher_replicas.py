"""Two dispatchers (two replicas) draining one PostgreSQL outbox through their claims.

Each URL must still receive its messages once each, in creation order, with at most one
send in flight for it across both replicas, including while sends fail and are retried.

Both replicas must take part, and that must not depend on scheduling luck (one replica can
drain 30 fast sends before the other's first read): each replica's first send waits until
the other replica has started one. With ``concurrency=2`` a replica claims at most two of
the three URL heads, so the other always finds one to claim and no replica waits forever.
"""

from __future__ import annotations

import asyncio
import random
import time

from tests.delivery.test_dispatcher import ScriptedSender, render
from tests.store.factories import make_event
from watcher.core.events import Severity
from watcher.core.ports import PlannedDelivery, SendResult, SystemClock
from watcher.delivery.dispatcher import Dispatcher
from watcher.store.postgres import PostgresStore

URLS = ("A", "B", "C")


class JitteredSender(ScriptedSender):
    """Sends take a few random milliseconds, so the two replicas interleave."""

    async def send(self, url_key: str, *, title: str, body: str, severity: Severity) -> SendResult:
        await asyncio.sleep(random.uniform(0, 0.01))
        return await super().send(url_key, title=title, body=body, severity=severity)


class ReplicaSender:
    """One replica's view of the shared sender: its first send waits for the other's."""

    def __init__(self, shared: JitteredSender, mine: asyncio.Event, other: asyncio.Event) -> None:
        self._shared, self._mine, self._other = shared, mine, other

    async def send(self, url_key: str, *, title: str, body: str, severity: Severity) -> SendResult:
        self._mine.set()
        await asyncio.wait_for(self._other.wait(), timeout=10)
        return await self._shared.send(url_key, title=title, body=body, severity=severity)


async def test_two_replicas_deliver_each_url_once_and_in_order(pg_dsn: str) -> None:
    clock = SystemClock()
    stores = [await PostgresStore.open(pg_dsn, clock=clock, pool_size=2) for _ in range(2)]
    sender = JitteredSender(fail_times={"B": 3})
    stop = asyncio.Event()
    try:
        for i, store in enumerate(stores):
            store.claim_as(f"r{i}", 30)
        expected: dict[str, list[str]] = {u: [] for u in URLS}
        for i in range(30):
            url, key = URLS[i % 3], f"e{i:02}"
            await stores[i % 2].commit_poll(
                f"wf-{i}", None, [make_event(key)], [PlannedDelivery(url, (key,))]
            )
            expected[url].append(key)
        started = (asyncio.Event(), asyncio.Event())
        dispatchers = [
            Dispatcher(
                store=store,
                sender=ReplicaSender(sender, started[i], started[1 - i]),
                render=render,
                clock=clock,
                retry_base_s=0.01,
                retry_cap_s=0.05,
                poll_interval_s=0.02,
                concurrency=2,
            )
            for i, store in enumerate(stores)
        ]
        runs = [asyncio.create_task(d.run(stop)) for d in dispatchers]
        deadline = time.monotonic() + 30
        while (await stores[0].outbox_stats(clock.now())).pending:
            assert time.monotonic() < deadline, "the outbox was not drained"
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*runs)
        for url in URLS:
            assert sender.titles(url) == expected[url], url  # once each, in order
        assert sender.max_active_per_url == 1  # never two sends of one URL at once
        assert sum(d.sent for d in dispatchers) == 30
        assert all(d.sent > 0 for d in dispatchers), "both replicas took part"
        assert len(sender.titles("B", delivered=False)) == 10 + 3  # the 3 failures retried
    finally:
        stop.set()
        for store in stores:
            await store.close()
