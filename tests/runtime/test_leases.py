"""LeaseKeeper over real PostgreSQL stores (several replicas in one process), SoleHolder,
and the poller's side of fencing: a target it does not hold is skipped, a fenced-off
commit is its own outcome and no failure of the target.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
import pytest
from structlog.testing import capture_logs

from tests.core.strategies import TARGET
from tests.runtime.test_poller import FixtureCloud, Recorder, make_ctx, new_health, seed
from tests.store.factories import FakeClock
from watcher.core.outcome import PollOutcome
from watcher.runtime.leases import LeaseKeeper, SoleHolder, make_leases
from watcher.runtime.poller import WorkflowWatch
from watcher.store.memory import MemoryStore
from watcher.store.postgres import PostgresStore

KEYS = [f"t{i}" for i in range(10)]


@contextlib.asynccontextmanager
async def stores(dsn: str, n: int) -> AsyncIterator[list[PostgresStore]]:
    opened = [await PostgresStore.open(dsn, clock=FakeClock(), pool_size=2) for _ in range(n)]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


def keeper(store: PostgresStore, name: str, lease_s: float = 0.6, **kw: object) -> LeaseKeeper:
    made = make_leases(store, replica_id=name, lease_s=lease_s, keys=lambda: KEYS, **kw)  # type: ignore[arg-type]
    assert isinstance(made, LeaseKeeper)
    return made


async def test_three_keepers_converge_on_fair_shares_and_a_dead_ones_keys_move(
    pg_dsn: str,
) -> None:
    async with stores(pg_dsn, 3) as (s1, s2, s3):
        acquired: dict[str, list[str]] = {"a": [], "b": [], "c": []}
        a = keeper(s1, "a", on_acquired=acquired["a"].extend)
        b = keeper(s2, "b", on_acquired=acquired["b"].extend)
        c = keeper(s3, "c", on_acquired=acquired["c"].extend)
        await a.round()
        assert sorted(a.held) == KEYS and all(a.holds(k) for k in KEYS)  # alone: everything
        assert sorted(acquired["a"]) == KEYS
        # b and c join; a gives back at most two per round, they take up to their share.
        for _ in range(8):
            for k in (b, c, a):
                await k.round()
        sizes = sorted(len(k.held) for k in (a, b, c))
        # Nobody holds more than ceil(10 / 3) = 4, so every newcomer got work.
        assert sizes in ([3, 3, 4], [2, 4, 4]), sizes
        assert sorted([*a.held, *b.held, *c.held]) == KEYS  # each key exactly once
        assert not (set(a.held) & set(b.held))
        for key in b.held:
            assert not a.holds(key) and b.holds(key)
            fence = b.fence(key)
            assert (fence.lease_key, fence.holder) == (key, "b") and fence.epoch >= 1

        # c dies (no more rounds): its leases lapse by the database clock, a and b share them.
        gone = sorted(c.held)
        for _ in range(8):  # the survivors keep their rounds (every lease_s / 3)
            await asyncio.sleep(0.2)
            await a.round()
            await b.round()
        assert sorted([*a.held, *b.held]) == KEYS
        assert sorted(len(k.held) for k in (a, b)) == [5, 5]
        assert set(gone) <= set(acquired["a"]) | set(acquired["b"])
        rows = await s1.lease_rows()
        assert all(rows[k][1] >= 2 for k in gone)  # taken over: a new epoch


async def test_a_graceful_stop_hands_the_leases_over_at_once(pg_dsn: str) -> None:
    async with stores(pg_dsn, 2) as (s1, s2):
        a, b = keeper(s1, "a", lease_s=30), keeper(s2, "b", lease_s=30)
        await a.round()
        await b.round()
        assert len(b.held) == 0  # all held by a, a lease of 30 s
        await a.release_all()
        await b.round()
        assert sorted(b.held) == KEYS


async def test_a_keeper_that_cannot_reach_the_store_says_so_and_stops_holding(
    pg_dsn: str,
) -> None:
    async with stores(pg_dsn, 1) as (s1,):
        lost: list[str] = []
        a = keeper(s1, "a", lease_s=0.6, on_lost=lost.extend)
        await a.round()
        assert a.problem() is None and len(a.held) == 10
        # The renewal itself fails (a round renews before anything else).
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE target_leases RENAME TO target_leases_gone")
        await a.round()
        problem = a.problem()
        assert problem is not None and problem.startswith("lease keeper cannot reach the store")
        assert len(a.held) == 10  # still within the lease: keeps polling
        await asyncio.sleep(0.7)
        assert not a.holds("t0")  # its own clock says the lease may be gone
        await a.round()
        assert a.held == {} and sorted(lost) == KEYS
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE target_leases_gone RENAME TO target_leases")
        await a.round()
        assert a.problem() is None and len(a.held) == 10


async def test_a_takeover_the_runtime_cannot_prepare_is_given_back(pg_dsn: str) -> None:
    async with stores(pg_dsn, 1) as (s1,):

        async def broken(keys: list[str]) -> None:
            raise RuntimeError("cannot load states")

        a = keeper(s1, "a", lease_s=30, on_acquired=broken)
        await a.round()
        assert a.held == {}
        rows = await s1.lease_rows()
        assert rows and not any(live for _h, _e, live in rows.values())  # free for others


async def _saturate(store: PostgresStore, stop: asyncio.Event, workers: int) -> None:
    """What a busy replica's polls do to its pool: every connection always in use."""

    async def one() -> None:
        while not stop.is_set():
            async with store._pool.connection() as conn:  # the polls' pool
                await conn.execute("SELECT pg_sleep(0.2)")

    await asyncio.gather(*(one() for _ in range(workers)))


async def test_leases_stay_live_while_polls_saturate_every_pool(pg_dsn: str) -> None:
    """Regression (bench-ha, 1,000 targets, 3 replicas: 0/0/0 live leases): renewals that
    queued behind polls for a pooled connection came later than the lease time, so every
    lease lapsed and was retaken, again and again. Here three keepers share 300 keys, each
    store's pool of 2 is kept busy by 6 "polls", and a renewal that waited its turn there
    (about 0.6 s a statement) would miss the 1.5 s lease."""
    keys = [f"k{i:03d}" for i in range(300)]
    async with stores(pg_dsn, 3) as opened:
        keepers = [
            make_leases(s, replica_id=f"r{i}", lease_s=1.5, keys=lambda: keys)
            for i, s in enumerate(opened)
        ]
        assert all(isinstance(k, LeaseKeeper) for k in keepers)
        stop = asyncio.Event()
        with capture_logs() as logs:
            busy = [asyncio.create_task(_saturate(s, stop, workers=6)) for s in opened]
            await asyncio.sleep(0.3)  # the pools are full before the first round
            runs = [asyncio.create_task(k.run()) for k in keepers if isinstance(k, LeaseKeeper)]
            await asyncio.sleep(6.0)  # 12 rounds
            rows = await opened[0].lease_rows()
            held = [sorted(k.held) for k in keepers if isinstance(k, LeaseKeeper)]
            stop.set()
            for task in runs:
                task.cancel()
            await asyncio.gather(*busy, *runs, return_exceptions=True)
    lapsed = [e for e in logs if e["event"] == "lease.lost" or e["event"] == "lease.store_failed"]
    assert lapsed == [], lapsed[:3]
    assert len(rows) == len(keys) and all(live for _h, _e, live in rows.values())
    # Every key held by exactly one keeper, and the three shares converged.
    assert sorted(k for share in held for k in share) == keys
    assert sorted(len(share) for share in held) == [100, 100, 100]


async def test_the_sole_holder_holds_everything_without_a_store() -> None:
    store = MemoryStore()
    leases = make_leases(store, replica_id="x", lease_s=30, keys=lambda: KEYS)
    assert isinstance(leases, SoleHolder)
    assert leases.holds("anything") and leases.fence("anything") is None
    assert leases.problem() is None


# -- the poller's side ----------------------------------------------------------------------


async def test_a_target_held_elsewhere_is_not_polled(pg_dsn: str) -> None:
    async with stores(pg_dsn, 1) as (s1,):
        rec = Recorder()
        cloud = FixtureCloud(seed())
        ctx = make_ctx(s1, rec)  # type: ignore[arg-type]
        ctx.holds = lambda target: False
        ctx.not_held_s = 7.0
        watch = WorkflowWatch(
            client=cloud, target=TARGET, workflow_id="wf-seed", health=new_health()
        )
        assert await watch.poll(ctx) == pytest.approx(7.0)
        assert cloud.priorities == [] and rec.outcomes == []


async def test_a_fenced_off_commit_is_lease_lost_not_a_target_failure(pg_dsn: str) -> None:
    async with stores(pg_dsn, 2) as (s1, s2):
        only = [TARGET.name]
        a = LeaseKeeper(s1, replica_id="a", lease_s=0.3, keys=lambda: only)
        b = LeaseKeeper(s2, replica_id="b", lease_s=30, keys=lambda: only)
        await a.round()
        assert TARGET.name in a.held
        rec = Recorder()
        ctx = make_ctx(s1, rec)  # type: ignore[arg-type]
        # a believes it still holds the target (it was paused), so it polls and commits.
        ctx.holds, ctx.fence, ctx.on_lease_lost = (lambda t: True), a.fence, a.lost
        ctx.not_held_s = 9.0
        target_health = new_health()
        watch = WorkflowWatch(
            client=FixtureCloud(seed()), target=TARGET, workflow_id="wf-seed", health=target_health
        )
        await asyncio.sleep(0.4)  # a's lease lapses; b takes the target over
        await b.round()
        assert TARGET.name in b.held
        delay = await watch.poll(ctx)
        assert delay == pytest.approx(9.0)
        assert rec.outcomes == [PollOutcome.LEASE_LOST] and rec.committed == []
        assert target_health.failures == 0 and watch.last_error is None
        assert TARGET.name not in a.held  # dropped: a stops polling it
        assert await s1.load_state(watch.key) is None  # nothing stale was written


async def test_health_events_of_a_lost_target_are_dropped_not_kept_as_unsaved(
    pg_dsn: str,
) -> None:
    async with stores(pg_dsn, 1) as (s1,):
        rec = Recorder()
        ctx = make_ctx(s1, rec)  # type: ignore[arg-type]
        a = LeaseKeeper(s1, replica_id="a", lease_s=30, keys=lambda: [TARGET.name])
        ctx.fence = a.fence  # never took the lease: epoch 0, always refused
        target_health = new_health()
        for _ in range(ctx.unreachable_after):  # enough failures for a target.unreachable
            await target_health.record(ctx, RuntimeError("down"))
        assert target_health.unsaved_error is None  # not "the store cannot write"
        assert rec.committed == [] and await s1.recent_events() == []


async def test_a_postgres_store_that_cannot_be_reached_is_a_store_failure(pg_dsn: str) -> None:
    """Not "internal" (a bug, logged with a traceback): the store failed, like SQLite's."""
    store = await PostgresStore.open(pg_dsn, clock=FakeClock(), pool_size=1)
    await store.close()  # every call now fails with the pool's own error
    rec = Recorder()
    watch = WorkflowWatch(
        client=FixtureCloud(seed()), target=TARGET, workflow_id="wf-seed", health=new_health()
    )
    await watch.poll(make_ctx(store, rec))  # type: ignore[arg-type]
    assert rec.outcomes == [PollOutcome.STORE]
    assert watch.last_error is not None and watch.last_error.startswith("state store: ")
