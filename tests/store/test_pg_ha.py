"""PostgreSQL HA at the store level: fencing, leases, delivery claims, LISTEN/NOTIFY.

Several ``PostgresStore`` instances on one schema play several replicas in one process;
every expiry is the database's own clock, so the tests use short leases and real sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest

from tests.store.factories import T0, FakeClock, make_event, make_state
from watcher.core.errors import LeaseLostError
from watcher.core.ports import Fence, LeaseStore, PlannedDelivery
from watcher.store.memory import MemoryStore
from watcher.store.postgres import PostgresStore

# mypy checks the PostgreSQL store implements the lease port (a drift fails `make lint`).
_LEASES: type[LeaseStore] = PostgresStore


@contextlib.asynccontextmanager
async def replicas(dsn: str, n: int) -> AsyncIterator[list[PostgresStore]]:
    stores = [await PostgresStore.open(dsn, clock=FakeClock(), pool_size=2) for _ in range(n)]
    for i, store in enumerate(stores):
        store.claim_as(f"r{i}", 30.0)
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


def plan(url: str, *keys: str) -> PlannedDelivery:
    return PlannedDelivery(url_key=url, event_keys=keys)


# -- fencing ----------------------------------------------------------------------------


async def test_a_fenced_commit_of_the_holder_writes(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 1) as (a,):
        (epoch,) = (await a.take_leases("r0", ["prod"], 30, 5)).values()
        fence = Fence("prod", "r0", epoch)
        new = await a.commit_poll("prod/wf-1", make_state(), [make_event("e1")], [], fence=fence)
        assert [e.dedup_key for e in new] == ["e1"]
        assert await a.load_state("prod/wf-1") == make_state()


async def test_a_stale_epoch_is_refused_and_writes_nothing(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 2) as (a, b):
        first = await a.take_leases("r0", ["prod"], 0.2, 5)
        stale = Fence("prod", "r0", first["prod"])
        await asyncio.sleep(0.3)  # a's lease lapses (a "paused" replica) and b takes it
        second = await b.take_leases("r1", ["prod"], 30, 5)
        assert second == {"prod": first["prod"] + 1}
        with pytest.raises(LeaseLostError) as lost:
            await a.commit_poll(
                "prod/wf-1",
                make_state(seq=9),
                [make_event("late")],
                [plan("A", "late")],
                fence=stale,
            )
        assert lost.value.lease_key == "prod" and lost.value.epoch == first["prod"]
        assert await a.load_state("prod/wf-1") is None
        assert await a.recent_events() == [] and await a.due_deliveries(T0) == []
        # Even the same holder name with the old epoch is refused: the epoch is the token.
        with pytest.raises(LeaseLostError):
            await b.commit_poll("prod/wf-1", None, [], [], fence=Fence("prod", "r1", 1))
        await b.commit_poll("prod/wf-1", make_state(), [], [], fence=Fence("prod", "r1", 2))
        assert await a.self_check() is None  # a lost lease is not a store failure


async def test_an_expired_lease_is_refused_even_if_nobody_took_it(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 1) as (a,):
        taken = await a.take_leases("r0", ["prod"], 0.2, 5)
        fence = Fence("prod", "r0", taken["prod"])
        await asyncio.sleep(0.3)
        with pytest.raises(LeaseLostError):
            await a.commit_poll("prod/wf-1", make_state(), [], [], fence=fence)
        # Renewing a lapsed lease nobody took keeps its epoch: nobody wrote meanwhile.
        assert await a.renew_leases("r0", ["prod"], 30) == taken
        await a.commit_poll("prod/wf-1", make_state(), [], [], fence=fence)
        assert await a.load_state("prod/wf-1") == make_state()


async def test_a_missing_lease_row_is_refused(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 1) as (a,):
        with pytest.raises(LeaseLostError):
            await a.commit_poll("x/wf", make_state(), [], [], fence=Fence("x", "r0", 1))


async def test_single_process_stores_accept_and_ignore_a_fence() -> None:
    store = MemoryStore(clock=FakeClock())
    new = await store.commit_poll(
        "prod/wf-1", make_state(), [make_event("e")], [], fence=Fence("prod", "nobody", 7)
    )
    assert [e.dedup_key for e in new] == ["e"]


# -- leases -----------------------------------------------------------------------------


async def test_take_renew_release_and_expiry(pg_dsn: str) -> None:
    keys = ["t1", "t2", "t3", "t4"]
    async with replicas(pg_dsn, 2) as (a, b):
        assert await a.take_leases("r0", keys, 30, 3) == {"t1": 1, "t2": 1, "t3": 1}
        # b can only get what is free; a's live leases are not for taking.
        assert await b.take_leases("r1", keys, 30, 4) == {"t4": 1}
        assert await b.take_leases("r1", keys, 30, 4) == {}
        # Renewal answers only what the holder still holds, in one statement.
        assert await a.renew_leases("r0", keys, 30) == {"t1": 1, "t2": 1, "t3": 1}
        assert await b.renew_leases("r1", ["t1", "t4"], 30) == {"t4": 1}
        await a.release_leases("r0", ["t3"])
        assert await b.take_leases("r1", keys, 30, 4) == {"t3": 2}  # epoch goes up
        assert await a.renew_leases("r0", keys, 30) == {"t1": 1, "t2": 1}
        # A dead holder's leases expire by the database clock and are taken over.
        await a.renew_leases("r0", ["t1", "t2"], 0.2)
        await asyncio.sleep(0.3)
        assert await b.take_leases("r1", keys, 30, 4) == {"t1": 2, "t2": 2}
        rows = await b.lease_rows()
        assert {k: (h, live) for k, (h, _e, live) in rows.items()} == {
            k: ("r1", True) for k in keys
        }


async def test_racing_replicas_never_take_one_lease_twice(pg_dsn: str) -> None:
    keys = [f"t{i:02}" for i in range(20)]
    async with replicas(pg_dsn, 3) as stores:
        got = await asyncio.gather(
            *(s.take_leases(f"r{i}", keys, 30, 20) for i, s in enumerate(stores))
        )
        taken = [k for g in got for k in g]
        assert sorted(taken) == keys  # each key exactly once
        # Expired all at once, raced again: still exactly once, epochs raised by one.
        for i, (s, g) in enumerate(zip(stores, got, strict=True)):
            await s.renew_leases(f"r{i}", list(g), 0.1)
        await asyncio.sleep(0.25)
        again = await asyncio.gather(
            *(s.take_leases(f"r{i}", keys, 30, 20) for i, s in enumerate(stores))
        )
        merged = {k: e for g in again for k, e in g.items()}
        assert sorted(k for g in again for k in g) == keys and set(merged.values()) == {2}


async def test_heartbeats_count_live_replicas(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 3) as (a, b, c):
        assert await a.live_replicas() == 0
        await a.heartbeat("r0", 30)
        await b.heartbeat("r1", 30)
        await c.heartbeat("r2", 0.2)
        assert await c.live_replicas() == 3
        await asyncio.sleep(0.3)
        assert await a.live_replicas() == 2  # r2 stopped beating
        await a.heartbeat("r0", 30)  # a second beat updates, not duplicates
        assert await b.live_replicas() == 2


# -- delivery claims --------------------------------------------------------------------


async def test_two_replicas_claim_each_url_head_once_and_keep_its_order(pg_dsn: str) -> None:
    """Two replicas drain one outbox concurrently; each URL receives in creation order."""
    async with replicas(pg_dsn, 2) as (a, b):
        for i in range(12):
            url = "AB"[i % 2]
            await a.commit_poll(
                f"wf-{i}", None, [make_event(f"{url}{i:02}")], [plan(url, f"{url}{i:02}")]
            )
        received: dict[str, list[str]] = {"A": [], "B": []}
        in_flight: set[str] = set()

        async def replica(store: PostgresStore) -> None:
            idle = 0
            while idle < 5:
                due = await store.due_deliveries(T0, limit=10)
                if not due:
                    idle += 1
                    await asyncio.sleep(0.01)
                    continue
                idle = 0
                for d in due:
                    assert d.url_key not in in_flight, "two sends in flight for one URL"
                    in_flight.add(d.url_key)
                    await asyncio.sleep(0.005)  # the send, outside any transaction
                    received[d.url_key].append(d.events[0].dedup_key)
                    in_flight.discard(d.url_key)
                    await store.mark_sent(d.id, T0)

        await asyncio.gather(replica(a), replica(b))
        assert received["A"] == [f"A{i:02}" for i in range(0, 12, 2)]
        assert received["B"] == [f"B{i:02}" for i in range(1, 12, 2)]
        assert (await a.outbox_stats(T0)).pending == 0


async def test_a_claimed_head_blocks_its_url_for_other_replicas(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 2) as (a, b):
        for key in ("a1", "a2"):
            await a.commit_poll("wf", None, [make_event(key)], [plan("A", key)])
        (head,) = await a.due_deliveries(T0)
        assert head.events[0].dedup_key == "a1"
        assert await b.due_deliveries(T0) == []  # not a1 (claimed), not a2 (not the head)
        assert [d.id for d in await a.due_deliveries(T0)] == [head.id]  # its own claim
        # A failed attempt releases the claim; the retry is due for anyone.
        await a.mark_failed(head.id, T0, "boom", T0)
        (retry,) = await b.due_deliveries(T0)
        assert retry.id == head.id and retry.attempts == 1
        # a's late outcome for b's claim must not reschedule b's send.
        await a.mark_failed(head.id, T0, "late", T0)
        (still,) = await b.due_deliveries(T0)
        assert still.attempts == 1
        await b.mark_sent(head.id, T0)
        (second,) = await a.due_deliveries(T0)
        assert second.events[0].dedup_key == "a2"


async def test_a_stale_claim_returns_to_the_queue(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 2) as (a, b):
        a.claim_as("r0", 0.2)
        await a.commit_poll("wf", None, [make_event("a1")], [plan("A", "a1")])
        (claimed,) = await a.due_deliveries(T0)
        assert await b.due_deliveries(T0) == []
        await asyncio.sleep(0.3)  # a died mid-send: its claim lapses
        (again,) = await b.due_deliveries(T0)
        assert again.id == claimed.id
        assert await a.due_deliveries(T0) == []  # now b's claim


async def test_renewed_claims_outlive_their_first_lease(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 2) as (a, b):
        a.claim_as("r0", 0.3)
        await a.commit_poll("wf", None, [make_event("a1")], [plan("A", "a1")])
        await a.due_deliveries(T0)
        for _ in range(3):  # a long send: its replica keeps renewing the claim
            await asyncio.sleep(0.15)
            assert await a.renew_claims("r0", 0.3) == 1
            assert await b.due_deliveries(T0) == []
        await a.mark_dead((await a.list_deliveries())[0].id, T0, "gave up")
        assert await a.renew_claims("r0", 0.3) == 0


# -- LISTEN/NOTIFY ----------------------------------------------------------------------


async def _wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_commits_wake_a_listener_on_another_replica(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 2) as (a, b):
        heard: list[str] = []
        task = asyncio.create_task(b.listen(heard.append))
        try:
            await _wait_for(lambda: heard == [""])  # connected: "anything may have changed"
            await a.commit_poll("prod/wf-1", make_state(), [], [])
            await a.commit_poll("prod/_target", None, [make_event("h1")], [])
            await a.commit_poll("prod/_target", None, [make_event("h1")], [])  # nothing new
            await _wait_for(lambda: len(heard) >= 3)
            await asyncio.sleep(0.1)
            assert heard == ["", "prod/wf-1", "prod/_target"]
            # A rolled-back (fenced-off) commit notifies nobody.
            with pytest.raises(LeaseLostError):
                await a.commit_poll("x/wf", make_state(), [], [], fence=Fence("x", "r0", 1))
            await asyncio.sleep(0.1)
            assert len(heard) == 3
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_the_listener_reconnects_after_its_connection_dies(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 2) as (a, b):
        heard: list[str] = []
        task = asyncio.create_task(b.listen(heard.append))
        try:
            await _wait_for(lambda: heard == [""])
            # What a server restart does to it: the backend goes away.
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND query LIKE 'LISTEN watcher_commits%%'"
                )
            await _wait_for(lambda: heard == ["", ""], timeout=10)
            await a.commit_poll("prod/wf-2", make_state(), [], [])
            await _wait_for(lambda: heard[-1:] == ["prod/wf-2"])
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_single_process_stores_do_not_listen() -> None:
    store = MemoryStore(clock=FakeClock())
    async with asyncio.timeout(1):
        await store.listen(lambda key: None)  # returns at once


async def test_a_closing_replica_gives_its_claims_back(pg_dsn: str) -> None:
    async with replicas(pg_dsn, 2) as (a, b):
        await a.commit_poll("wf", None, [make_event("a1")], [plan("A", "a1")])
        (claimed,) = await a.due_deliveries(T0)
        assert await b.due_deliveries(T0) == []
        await a.close()  # a clean stop: the claim goes back at once, not after 30 s
        (again,) = await b.due_deliveries(T0)
        assert again.id == claimed.id
