"""One contract for the ``Store`` port, run against every backend.

MemoryStore runs in process; SqliteStore uses a file in tmp_path; PostgresStore a fresh
schema on the PostgreSQL server that tests/pg.py finds or starts (never skipped silently).
Backend-specific details (file mode, WAL, migrations) stay in each backend's own tests; what
the runtime relies on is here. The two tests that need a durable database (a fault injected
below the store, a reopen) say so when they skip the memory store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.store.factories import T0, FakeClock, make_event, make_state
from watcher.core.acks import Acknowledgement
from watcher.core.errors import LeaseLostError
from watcher.core.events import Severity
from watcher.core.health import TargetHealth
from watcher.core.ports import Fence, OutboxStats, PlannedDelivery, Store, UrlKeys
from watcher.core.silences import Silence
from watcher.store.memory import MemoryStore
from watcher.store.postgres import PostgresStore
from watcher.store.sqlite import SqliteStore

AnyStore = Store

# mypy checks that every backend implements the whole port (a missing or mistyped method
# fails `make lint`, not a runtime call deep inside the daemon).
_MEMORY: type[Store] = MemoryStore
_SQLITE: type[Store] = SqliteStore
_POSTGRES: type[Store] = PostgresStore


def _typed(store: MemoryStore) -> Store:
    return store  # the instance check, in the form the runtime uses it


@dataclass
class Backend:
    """A store under test plus a raw side channel to inject a fault into its database."""

    store: AnyStore
    reopen: Callable[[], Awaitable[AnyStore]] | None  # None: nothing survives a close
    raw: Callable[[str], None] | None  # run one statement outside the store
    fail_deliveries_sql: tuple[str, ...]  # makes every delivery INSERT fail "disk on fire"
    heal_deliveries_sql: str


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _sqlite_backend(path: Path, store: SqliteStore, clock: FakeClock) -> Backend:
    def raw(sql: str) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(sql)

    return Backend(
        store=store,
        reopen=lambda: SqliteStore.open(path, clock=clock),
        raw=raw,
        fail_deliveries_sql=(
            "CREATE TRIGGER boom BEFORE INSERT ON deliveries "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
        ),
        heal_deliveries_sql="DROP TRIGGER boom",
    )


def _pg_backend(dsn: str, store: PostgresStore, clock: FakeClock) -> Backend:
    def raw(sql: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.encode())

    return Backend(
        store=store,
        reopen=lambda: PostgresStore.open(dsn, clock=clock, pool_size=2),
        raw=raw,
        fail_deliveries_sql=(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'disk on fire'; END$$",
            "CREATE TRIGGER boom BEFORE INSERT ON deliveries FOR EACH ROW EXECUTE FUNCTION boom()",
        ),
        heal_deliveries_sql="DROP TRIGGER boom ON deliveries",
    )


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Backend]:
    if request.param == "memory":
        memory = MemoryStore(clock=clock)
        yield Backend(memory, None, None, (), "")
        await memory.close()
    elif request.param == "sqlite":
        path = tmp_path / "state" / "watcher.sqlite3"
        sqlite_store = await SqliteStore.open(path, clock=clock)
        yield _sqlite_backend(path, sqlite_store, clock)
        await sqlite_store.close()
    else:
        dsn: str = request.getfixturevalue("pg_dsn")
        pg_store = await PostgresStore.open(dsn, clock=clock, pool_size=3)
        yield _pg_backend(dsn, pg_store, clock)
        await pg_store.close()


def plan(url: str, *keys: str) -> PlannedDelivery:
    return PlannedDelivery(url_key=url, event_keys=keys)


async def _keys(store: AnyStore) -> list[str]:
    return [s.event.dedup_key for s in await store.recent_events()]


# -- commit_poll: one transaction, dedup ----------------------------------------------------


async def test_commit_writes_state_events_and_deliveries(backend: Backend) -> None:
    store = backend.store
    e1, e2 = make_event("k1"), make_event("k2", severity=Severity.FAILURE)
    new = await store.commit_poll(
        "wf-1",
        make_state("Running", seq=2),
        [e1, e2],
        [plan("chat", "k1", "k2"), plan("mail", "k2")],
    )
    assert new == [e1, e2]
    assert await store.load_state("wf-1") == make_state("Running", seq=2)
    assert await store.load_all_states() == {"wf-1": make_state("Running", seq=2)}
    assert await store.workflow_keys() == ["wf-1"]
    due = await store.due_deliveries(T0)
    assert [(d.url_key, [e.dedup_key for e in d.events]) for d in due] == [
        ("chat", ["k1", "k2"]),
        ("mail", ["k2"]),
    ]
    first = due[0]
    assert (first.state, first.attempts, first.workflow_key) == ("pending", 0, "wf-1")
    assert first.created_at == T0 and first.next_attempt_at == T0
    assert first.created_at.utcoffset() == timedelta(0)
    assert (first.last_error, first.sent_at, first.maybe_delivered) == (None, None, 0)


async def test_known_and_repeated_keys_are_skipped_and_dropped_from_deliveries(
    backend: Backend,
) -> None:
    store = backend.store
    await store.commit_poll("wf-1", None, [make_event("old")], [plan("chat", "old")])
    new = await store.commit_poll(
        "wf-1",
        None,
        [make_event("old"), make_event("fresh"), make_event("fresh")],
        [plan("chat", "old", "fresh", "fresh"), plan("mail", "old")],
    )
    assert [e.dedup_key for e in new] == ["fresh"]
    assert await _keys(store) == ["old", "fresh"]
    # "mail" was left with no new event: no delivery; "chat" carries only the new key once.
    heads = await store.due_deliveries(T0)
    assert [(d.url_key, [e.dedup_key for e in d.events]) for d in heads] == [("chat", ["old"])]
    everything = await store.deliveries_for(["old", "fresh"])
    assert [(d.url_key, [e.dedup_key for e in d.events]) for d in everything] == [
        ("chat", ["old"]),
        ("chat", ["fresh"]),
    ]


async def test_a_fence_is_enforced_by_the_shared_store_and_ignored_by_the_others(
    backend: Backend,
) -> None:
    """Single-process stores have one writer: any fence passes. PostgreSQL checks it
    against the lease table, where nobody holds "prod": refused, nothing written."""
    store = backend.store
    fence = Fence("prod", "replica-x", 3)
    if isinstance(store, PostgresStore):
        with pytest.raises(LeaseLostError):
            await store.commit_poll("prod/wf-1", make_state(), [make_event("f")], [], fence=fence)
        assert await store.load_state("prod/wf-1") is None and await store.recent_events() == []
        (epoch,) = (await store.take_leases("replica-x", ["prod"], 30, 1)).values()
        fence = Fence("prod", "replica-x", epoch)
    new = await store.commit_poll("prod/wf-1", make_state(), [make_event("f")], [], fence=fence)
    assert [e.dedup_key for e in new] == ["f"]
    assert await store.load_state("prod/wf-1") == make_state()


async def test_state_none_keeps_the_stored_state_and_order_is_kept(backend: Backend) -> None:
    store = backend.store
    await store.commit_poll("wf-1", make_state("Init"), [], [])
    await store.commit_poll(
        "wf-1",
        None,
        [make_event("a"), make_event("b"), make_event("c")],
        [plan("u", "c", "a", "b")],
    )
    assert await store.load_state("wf-1") == make_state("Init")
    assert await store.load_state("unknown") is None
    (d,) = await store.due_deliveries(T0)
    assert [e.dedup_key for e in d.events] == ["c", "a", "b"]


async def test_a_commit_that_fails_midway_leaves_nothing_behind(backend: Backend) -> None:
    """State and events are written when the delivery insert fails: everything rolls back."""
    store = backend.store
    if backend.raw is None:
        pytest.skip("MemoryStore has no database below it to inject a fault into")
    await store.commit_poll("wf-1", make_state(seq=1), [make_event("k0")], [plan("u", "k0")])
    for sql in backend.fail_deliveries_sql:
        backend.raw(sql)
    with pytest.raises(Exception, match="disk on fire"):
        await store.commit_poll("wf-1", make_state(seq=2), [make_event("k1")], [plan("u", "k1")])

    assert await store.load_state("wf-1") == make_state(seq=1)
    assert await _keys(store) == ["k0"]
    assert len(await store.deliveries_for(["k0", "k1"])) == 1
    backend.raw(backend.heal_deliveries_sql)
    again = await store.commit_poll(
        "wf-1", make_state(seq=2), [make_event("k1")], [plan("u", "k1")]
    )
    assert [e.dedup_key for e in again] == ["k1"]
    assert await store.load_state("wf-1") == make_state(seq=2)


async def test_unserialisable_state_and_naive_times_fail_before_writing(backend: Backend) -> None:
    store = backend.store
    fired: frozenset[Any] = frozenset({"a", 1})  # a bug's value: cannot be sorted, so not written
    bad = replace(make_state(), fired=fired)
    with pytest.raises(TypeError):
        await store.commit_poll("wf-1", bad, [make_event("k")], [plan("u", "k")])
    with pytest.raises(ValueError, match="naive"):
        await store.due_deliveries(T0.replace(tzinfo=None))
    assert await store.recent_events() == []
    assert await store.load_state("wf-1") is None


async def test_concurrent_commits_of_one_key_store_it_once(backend: Backend) -> None:
    store = backend.store
    results = await asyncio.gather(
        *(
            store.commit_poll(
                f"wf-{i}", make_state(seq=i), [make_event("same")], [plan("u", "same")]
            )
            for i in range(6)
        )
    )
    assert sum(len(r) for r in results) == 1
    assert await _keys(store) == ["same"]
    assert len(await store.deliveries_for(["same"])) == 1
    assert len(await store.load_all_states()) == 6


async def test_events_keep_every_field(backend: Backend) -> None:
    event = make_event(
        "full",
        severity=Severity.WARNING,
        started_at=T0 - timedelta(minutes=3),
        ended_at=T0,
        late_since=T0 - timedelta(minutes=1),
        details={"nested": {"x": [1, 2]}, "text": "ünïcode"},
    )
    await backend.store.commit_poll("wf", None, [event], [])
    (stored,) = await backend.store.recent_events()
    assert stored.event == event


async def test_nul_characters_in_events_and_state_round_trip(backend: Backend) -> None:
    """Cloud error texts are stored verbatim; a NUL in one must not make a poll uncommittable."""
    event = make_event("nul", details={"reason": "bad\x00byte"})
    state = replace(make_state(), fired=frozenset({"x\x00y"}))
    await backend.store.commit_poll("wf", state, [event], [plan("u", "nul")])
    (stored,) = await backend.store.recent_events()
    assert stored.event == event
    assert await backend.store.load_state("wf") == state
    await backend.store.save_known_workflows("t/_discovery", ["\x00"])
    assert await backend.store.load_known_workflows("t/_discovery") == frozenset({"\x00"})
    # Free-text errors keep everything but the NUL itself (PostgreSQL text cannot hold it).
    (head,) = await backend.store.due_deliveries(T0)
    await backend.store.mark_failed(head.id, T0, "HTTP 500: bad\x00body", T0)
    await backend.store.mark_dead(head.id, T0, "gave up: bad\x00body")
    (dead,) = await backend.store.deliveries_for(["nul"])
    assert dead.state == "dead" and dead.attempts == 2
    assert dead.last_error is not None
    assert dead.last_error.replace("\ufffd", "\x00") == "gave up: bad\x00body"


# -- the outbox -----------------------------------------------------------------------------


async def test_due_deliveries_gives_only_the_head_of_each_url(backend: Backend) -> None:
    store = backend.store
    for i in range(3):
        await store.commit_poll("wf-1", None, [make_event(f"a{i}")], [plan("A", f"a{i}")])
    await store.commit_poll("wf-2", None, [make_event("b0")], [plan("B", "b0")])

    heads = await store.due_deliveries(T0)
    assert [(d.url_key, d.events[0].dedup_key) for d in heads] == [("A", "a0"), ("B", "b0")]
    await store.mark_sent(heads[0].id, T0)
    heads = await store.due_deliveries(T0)
    assert [(d.url_key, d.events[0].dedup_key) for d in heads] == [("A", "a1"), ("B", "b0")]
    assert await store.due_deliveries(T0, limit=1) == heads[:1]


async def test_rekey_moves_pending_deliveries_in_creation_order(backend: Backend) -> None:
    """A reload that renames/reorders URLs moves their queues; swaps apply at once, merged
    queues are ordered by creation (id), finished deliveries keep their key."""
    store = backend.store
    for key, name in [("A", "a0"), ("B", "b0"), ("A", "a1"), ("C", "c0"), ("B", "b1")]:
        await store.commit_poll("wf", None, [make_event(name)], [plan(key, name)])
    (a0, _b0, _c0) = await store.due_deliveries(T0)
    await store.mark_sent(a0.id, T0)

    moved = await store.rekey_deliveries({"A": "B", "B": "A", "C": "A", "X": "Y", "Q": "Q"})

    assert moved == {"A": 1, "B": 2, "C": 1}
    rows = await store.deliveries_for(["a0", "a1", "b0", "b1", "c0"])
    assert [(d.events[0].dedup_key, d.url_key) for d in rows] == [
        ("a0", "A"), ("b0", "A"), ("a1", "B"), ("c0", "A"), ("b1", "A"),
    ]  # fmt: skip
    heads = await store.due_deliveries(T0)
    assert [(d.url_key, d.events[0].dedup_key) for d in heads] == [("A", "b0"), ("B", "a1")]
    await store.mark_sent(heads[0].id, T0)
    assert [d.events[0].dedup_key for d in await store.due_deliveries(T0)] == ["a1", "c0"]
    assert await store.rekey_deliveries({}) == {}


async def test_rekey_records_what_the_url_keys_stand_for(backend: Backend) -> None:
    """The key -> URL fingerprint record is written with the moves (and survives a
    restart: ``test_everything_survives_close_and_reopen``)."""
    store = backend.store
    assert await store.load_url_keys() is None  # before the first start
    await store.commit_poll("wf", None, [make_event("a0")], [plan("A", "a0")])
    first = UrlKeys(salt="s4lt", fingerprints={"A": "fa", "B": "fb"})
    assert await store.rekey_deliveries({}, first) == {}
    assert await store.load_url_keys() == first
    swapped = UrlKeys(salt="s4lt", fingerprints={"A": "fb", "B": "fa"})
    assert await store.rekey_deliveries({"A": "B"}, swapped) == {"A": 1}
    assert await store.load_url_keys() == swapped
    assert [d.url_key for d in await store.due_deliveries(T0)] == ["B"]


async def test_a_head_waiting_for_retry_holds_back_its_url_only(backend: Backend) -> None:
    store = backend.store
    await store.commit_poll("wf", None, [make_event("a0")], [plan("A", "a0")])
    await store.commit_poll("wf", None, [make_event("a1")], [plan("A", "a1")])
    await store.commit_poll("wf", None, [make_event("b0")], [plan("B", "b0")])
    head_a = (await store.due_deliveries(T0))[0]
    await store.mark_failed(head_a.id, T0, "HTTP 503", T0 + timedelta(seconds=30))

    assert [d.url_key for d in await store.due_deliveries(T0)] == ["B"]
    # A new process learns when to look again (a1 and b0 are due now: not retries).
    assert (await store.outbox_stats(T0)).next_retry_at == T0 + timedelta(seconds=30)
    assert (await store.outbox_stats(T0 + timedelta(seconds=30))).next_retry_at is None
    (retry, _) = await store.due_deliveries(T0 + timedelta(seconds=30))
    assert (retry.id, retry.attempts, retry.last_error) == (head_a.id, 1, "HTTP 503")
    assert retry.next_attempt_at == T0 + timedelta(seconds=30)


async def test_marks_finish_deliveries_once_and_show_in_stats(
    backend: Backend, clock: FakeClock
) -> None:
    store = backend.store
    await store.commit_poll("wf", None, [make_event("s")], [plan("S", "s")])
    await store.commit_poll("wf", None, [make_event("d")], [plan("D", "d")])
    await store.commit_poll("wf", None, [make_event("p")], [plan("P", "p")])
    sent, dead, _pending = await store.due_deliveries(T0)
    await store.mark_sent(sent.id, T0 + timedelta(seconds=1))
    await store.mark_dead(dead.id, T0 + timedelta(seconds=2), "gave up")
    # Marks never resurrect a finished delivery nor count more attempts on it.
    await store.mark_failed(sent.id, T0, "late", T0)
    await store.mark_sent(dead.id, T0)

    (s_row,) = await store.deliveries_for(["s"])
    (d_row,) = await store.deliveries_for(["d"])
    assert (s_row.state, s_row.attempts, s_row.sent_at) == ("sent", 1, T0 + timedelta(seconds=1))
    assert (d_row.state, d_row.attempts, d_row.last_error) == ("dead", 1, "gave up")
    assert d_row.next_attempt_at == T0 + timedelta(seconds=2)
    assert [d.url_key for d in await store.due_deliveries(T0)] == ["P"]

    stats = await store.outbox_stats(T0 + timedelta(seconds=90))
    assert stats == OutboxStats(pending=1, dead=1, oldest_pending_age_s=90.0)


async def test_outbox_stats_of_an_empty_outbox(backend: Backend) -> None:
    assert await backend.store.outbox_stats(T0) == OutboxStats(
        pending=0, dead=0, oldest_pending_age_s=0.0
    )


async def test_maybe_delivered_attempts_are_counted(backend: Backend) -> None:
    store = backend.store
    await store.commit_poll("wf", None, [make_event("m")], [plan("u", "m")])
    (head,) = await store.due_deliveries(T0)
    await store.mark_failed(head.id, T0, "no answer in 30 s", T0, maybe_delivered=True)
    await store.mark_failed(head.id, T0, "HTTP 503", T0)
    await store.mark_dead(head.id, T0, "gave up", maybe_delivered=True)
    (row,) = await store.deliveries_for(["m"])
    assert (row.state, row.attempts, row.maybe_delivered) == ("dead", 3, 2)


# -- the event feed -------------------------------------------------------------------------


async def test_recent_events_tail_and_cursor_paging(backend: Backend) -> None:
    store = backend.store
    for i in range(5):
        await store.commit_poll("wf", None, [make_event(f"k{i}")], [])
    tail = await store.recent_events(limit=2)
    assert [s.event.dedup_key for s in tail] == ["k3", "k4"]
    assert tail[0].seq < tail[1].seq
    everything = await store.recent_events(limit=5)
    page = await store.recent_events(after_seq=everything[0].seq, limit=2)
    assert [s.event.dedup_key for s in page] == ["k1", "k2"]
    page = await store.recent_events(after_seq=page[-1].seq, limit=2)
    assert [s.event.dedup_key for s in page] == ["k3", "k4"]
    assert await store.recent_events(after_seq=tail[1].seq) == []


# -- kv, prune, ping, reopen ----------------------------------------------------------------


async def test_health_and_known_workflows_round_trip_and_replace(backend: Backend) -> None:
    store = backend.store
    assert await store.load_health("prod") is None
    failing = TargetHealth(consecutive_failures=3, failing_since=T0, last_error_kind="server")
    await store.save_health("prod", failing)
    assert await store.load_health("prod") == failing
    await store.save_health("prod", TargetHealth())
    assert await store.load_health("prod") == TargetHealth()
    assert await store.load_health("other") is None

    assert await store.load_known_workflows("prod/_discovery") is None
    await store.save_known_workflows("prod/_discovery", [])  # the first-listing marker
    assert await store.load_known_workflows("prod/_discovery") == frozenset()
    await store.save_known_workflows("prod/_discovery", {"b", "a"})
    assert await store.load_known_workflows("prod/_discovery") == frozenset({"a", "b"})


async def test_prune_removes_old_finished_rows_but_never_pending_ones(backend: Backend) -> None:
    store = backend.store
    await store.commit_poll("wf", None, [make_event("sent")], [plan("u", "sent")])
    await store.commit_poll("wf", None, [make_event("pending")], [plan("v", "pending")])
    await store.commit_poll("wf", None, [make_event("bare")], [])
    (sent_d, _) = await store.due_deliveries(T0)
    await store.mark_sent(sent_d.id, T0)
    last_seq = (await store.recent_events())[-1].seq

    assert await store.prune(T0) == 0  # nothing is older than the cutoff yet
    assert await store.prune(T0 + timedelta(days=1)) == 3  # sent delivery, its event, "bare"
    assert await store.prune(T0 + timedelta(days=1)) == 0
    assert await _keys(store) == ["pending"]
    assert [d.state for d in await store.deliveries_for(["pending", "sent"])] == ["pending"]
    # seq is never reused after pruning, so feed cursors stay valid.
    await store.commit_poll("wf", None, [make_event("later")], [])
    assert (await store.recent_events())[-1].seq > last_seq


async def test_prune_works_in_bounded_batches(backend: Backend) -> None:
    store = backend.store
    await store.commit_poll("wf", None, [make_event(f"e{i}") for i in range(5)], [])
    assert await store.prune(T0 + timedelta(days=1), batch=2) == 2
    assert await store.prune(T0 + timedelta(days=1), batch=2) == 2
    assert await store.prune(T0 + timedelta(days=1), batch=2) == 1
    assert await store.recent_events() == []


async def test_everything_survives_close_and_reopen(backend: Backend) -> None:
    store = backend.store
    if backend.reopen is None:
        pytest.skip("MemoryStore keeps nothing across a close, by design")
    await store.commit_poll("wf", make_state(seq=1), [make_event("k")], [plan("u", "k")])
    await store.save_health("t", TargetHealth(consecutive_failures=1))
    await store.rekey_deliveries({}, UrlKeys(salt="s", fingerprints={"u": "fu"}))
    await store.close()
    again = await backend.reopen()
    try:
        assert await again.load_state("wf") == make_state(seq=1)
        assert await _keys(again) == ["k"]
        assert [d.url_key for d in await again.due_deliveries(T0)] == ["u"]
        assert await again.load_health("t") == TargetHealth(consecutive_failures=1)
        assert await again.load_url_keys() == UrlKeys(salt="s", fingerprints={"u": "fu"})
    finally:
        await again.close()


async def test_ping_and_close(backend: Backend) -> None:
    store = backend.store
    assert await store.ping() is True
    await store.close()
    await store.close()  # idempotent
    assert await store.ping() is False
    with pytest.raises(Exception, match="closed"):
        await store.load_state("wf")


async def test_store_satisfies_the_port(backend: Backend) -> None:
    """Every backend type-checks as the runtime's Store (see _MEMORY/_SQLITE/_POSTGRES)."""

    def accepts(store: Store) -> Any:
        return store

    assert accepts(backend.store) is backend.store
    assert _typed(MemoryStore()) is not None


async def test_self_check_and_identity_of_a_healthy_store(backend: Backend) -> None:
    store = backend.store
    assert store.identity_problem() is None
    assert await store.self_check() is None
    await store.close()
    assert await store.self_check() == "the store is closed"


# -- what the CLI and the status pages read -------------------------------------------------


async def test_events_with_deliveries_and_list_deliveries(backend: Backend) -> None:
    store = backend.store
    await store.commit_poll(
        "wf-1",
        None,
        [make_event("a"), make_event("b")],
        [plan("chat", "a", "b"), plan("mail", "b")],
    )
    await store.commit_poll("wf-2", None, [make_event("c")], [])
    chat = (await store.due_deliveries(T0))[0]
    await store.mark_sent(chat.id, T0)

    rows = await store.events_with_deliveries(limit=10)
    assert [
        (r.event.dedup_key, r.workflow_key, [(d.url_key, d.state) for d in r.deliveries])
        for r in rows
    ] == [
        ("a", "wf-1", [("chat", "sent")]),
        ("b", "wf-1", [("chat", "sent"), ("mail", "pending")]),
        ("c", "wf-2", []),
    ]
    assert [r.event.dedup_key for r in await store.events_with_deliveries(limit=1)] == ["c"]
    assert [d.url_key for d in await store.list_deliveries()] == ["mail", "chat"]
    assert [d.url_key for d in await store.list_deliveries(state="sent")] == ["chat"]
    assert [d.url_key for d in await store.list_deliveries(limit=1)] == ["mail"]


async def test_silences_add_list_expire_remove(backend: Backend, clock: FakeClock) -> None:
    store = backend.store
    s1 = await store.add_silence(
        Silence(
            until=T0 + timedelta(hours=1),
            cluster_id="prod-*",
            labels={"env": "prod"},
            creator="ana",
            comment="maintenance",
        )
    )
    s2 = await store.add_silence(Silence(until=T0 - timedelta(hours=1), kinds=("task.*",)))
    later = await store.add_silence(
        Silence(until=T0 + timedelta(hours=3), starts_at=T0 + timedelta(hours=2))
    )
    assert s1.id is not None and len({s1.id, s2.id, later.id}) == 3
    assert [s.id for s in await store.list_silences()] == [s1.id, s2.id, later.id]
    # Ended ones drop out of the active list; one that starts later is listed already.
    assert await store.list_silences(active_at=T0) == [s1, later]
    assert (s1.cluster_id, s1.labels, s1.creator, s1.comment, s1.created_at) == (
        "prod-*",
        {"env": "prod"},
        "ana",
        "maintenance",
        T0,
    )
    assert later.starts_at == T0 + timedelta(hours=2)

    expired = await store.expire_silence(int(s1.id), T0 + timedelta(minutes=5))
    assert expired is not None and expired.until == T0 + timedelta(minutes=5)
    again = await store.expire_silence(int(s1.id), T0 + timedelta(minutes=30))
    assert again is not None and again.until == T0 + timedelta(minutes=5)  # stays as it was
    assert await store.expire_silence(999_999, T0) is None
    assert await store.list_silences(active_at=T0 + timedelta(minutes=10)) == [later]

    assert await store.remove_silence(int(s2.id or 0)) is True
    assert await store.remove_silence(int(s2.id or 0)) is False
    assert [s.id for s in await store.list_silences()] == [s1.id, later.id]


async def test_acks_set_replace_end_and_list(backend: Backend) -> None:
    store = backend.store
    first = Acknowledgement("prod/wf-1", "ana", "looking", T0, T0 + timedelta(hours=1))
    await store.set_ack(first)
    await store.set_ack(Acknowledgement("prod/wf-2", "bo", "", T0, T0 + timedelta(minutes=1)))
    assert await store.list_acks() == [
        first,
        Acknowledgement("prod/wf-2", "bo", "", T0, T0 + timedelta(minutes=1)),
    ]
    # Past its end an acknowledgement is no longer in force and cannot be ended again.
    later = T0 + timedelta(minutes=5)
    assert await store.list_acks(active_at=later) == [first]
    assert await store.end_ack("prod/wf-2", later) is False
    assert await store.end_ack("prod/wf-1", later) is True
    assert await store.end_ack("prod/wf-1", later) is False
    assert await store.list_acks(active_at=later) == []
    (ended, _) = await store.list_acks()
    assert ended.ended_at == later
    # A new acknowledgement replaces the ended one and is in force again.
    renewed = Acknowledgement("prod/wf-1", "cy", "again", later, T0 + timedelta(hours=2))
    await store.set_ack(renewed)
    assert await store.list_acks(active_at=later) == [renewed]


async def test_a_large_state_round_trips(backend: Backend) -> None:
    """A state of a workflow with thousands of points is serialised off the event loop."""
    from watcher.core.models import Point

    points = tuple(Point(task_type=f"t{i}", status="Success") for i in range(2000))
    state = make_state("Running", points=points)
    await backend.store.commit_poll("wf-big", state, [], [])
    assert await backend.store.load_state("wf-big") == state
