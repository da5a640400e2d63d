"""SqliteStore against real SQLite files: atomic commits, the outbox queues, durability."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.store.factories import T0, FakeClock, make_event, make_state
from watcher.core.acks import Acknowledgement
from watcher.core.events import Severity
from watcher.core.ports import OutboxStats, PlannedDelivery
from watcher.core.silences import Silence
from watcher.store import schema
from watcher.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "state" / "watcher.db", clock=clock)
    yield s
    await s.close()


def plan(url: str, *keys: str) -> PlannedDelivery:
    return PlannedDelivery(url_key=url, event_keys=keys)


async def test_open_creates_private_file_in_wal_mode_at_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "watcher.db"
    s = await SqliteStore.open(path)
    try:
        assert path.exists()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with sqlite3.connect(path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert schema.current_version(other) == schema.LATEST_VERSION
        assert await s.ping()
    finally:
        await s.close()


async def test_commit_poll_writes_state_events_and_deliveries(store: SqliteStore) -> None:
    e1, e2 = make_event("k1"), make_event("k2", severity=Severity.FAILURE)
    new = await store.commit_poll(
        "wf-1", make_state("Running"), [e1, e2], [plan("chat", "k1", "k2"), plan("mail", "k2")]
    )
    assert new == [e1, e2]
    assert await store.load_state("wf-1") == make_state("Running")
    assert await store.load_all_states() == {"wf-1": make_state("Running")}
    assert [s.event for s in await store.recent_events()] == [e1, e2]
    deliveries = await store.deliveries_for(["k2"])
    assert [(d.url_key, [e.dedup_key for e in d.events]) for d in deliveries] == [
        ("chat", ["k1", "k2"]),
        ("mail", ["k2"]),
    ]
    d = deliveries[0]
    assert (d.state, d.attempts, d.workflow_key) == ("pending", 0, "wf-1")
    assert d.created_at == d.next_attempt_at == T0


async def test_known_dedup_keys_are_skipped_and_dropped_from_deliveries(
    store: SqliteStore,
) -> None:
    await store.commit_poll("wf-1", make_state(seq=1), [make_event("old")], [plan("chat", "old")])
    fresh = make_event("fresh")
    new = await store.commit_poll(
        "wf-1",
        make_state(seq=2),
        [make_event("old"), fresh],
        [plan("chat", "old", "fresh"), plan("mail", "old")],
    )
    assert new == [fresh]
    assert await store.load_state("wf-1") == make_state(seq=2)
    created = await store.deliveries_for(["fresh"])
    assert [(d.url_key, [e.dedup_key for e in d.events]) for d in created] == [("chat", ["fresh"])]
    # The "mail" delivery had only a known event, so it was not created at all.
    assert [d.url_key for d in await store.list_deliveries()] == ["chat", "chat"]


async def test_a_key_repeated_within_one_commit_is_stored_once(store: SqliteStore) -> None:
    first = make_event("dup")
    new = await store.commit_poll(
        "wf-1", None, [first, make_event("dup", severity=Severity.FAILURE)], [plan("u", "dup")]
    )
    assert new == [first]
    assert len(await store.recent_events()) == 1


async def test_state_none_keeps_the_stored_state(store: SqliteStore) -> None:
    await store.commit_poll("wf-1", make_state("Init"), [], [])
    await store.commit_poll("wf-1", None, [make_event("watcher")], [])
    assert await store.load_state("wf-1") == make_state("Init")
    assert await store.load_state("unknown") is None


async def test_delivery_events_keep_the_planned_order(store: SqliteStore) -> None:
    events = [make_event("a"), make_event("b"), make_event("c")]
    await store.commit_poll("wf-1", None, events, [plan("u", "c", "a", "b")])
    (d,) = await store.due_deliveries(T0)
    assert [e.dedup_key for e in d.events] == ["c", "a", "b"]


async def test_a_commit_that_fails_midway_leaves_nothing_behind(
    store: SqliteStore, tmp_path: Path
) -> None:
    """State and events are already written when the delivery insert fails: all roll back."""
    await store.commit_poll("wf-1", make_state(seq=1), [make_event("k0")], [plan("u", "k0")])
    with sqlite3.connect(store.path) as other:
        other.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON deliveries "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
        await store.commit_poll("wf-1", make_state(seq=2), [make_event("k1")], [plan("u", "k1")])

    assert await store.load_state("wf-1") == make_state(seq=1)
    assert [s.event.dedup_key for s in await store.recent_events()] == ["k0"]
    assert len(await store.list_deliveries()) == 1
    # The connection is not left inside a transaction: the next commit works.
    with sqlite3.connect(store.path) as other:
        other.execute("DROP TRIGGER boom")
    assert [
        e.dedup_key
        for e in await store.commit_poll("wf-1", make_state(seq=2), [make_event("k1")], [])
    ] == ["k1"]


async def test_an_unserialisable_state_fails_before_anything_is_written(
    store: SqliteStore,
) -> None:
    fired: frozenset[Any] = frozenset({"a", 1})  # a bug's value: cannot be sorted
    with pytest.raises(TypeError):
        await store.commit_poll(
            "wf-1",
            replace(make_state(), fired=fired),
            [make_event("k")],
            [plan("u", "k")],
        )
    assert await store.recent_events() == []
    assert await store.load_state("wf-1") is None


async def test_naive_datetimes_are_rejected(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.due_deliveries(T0.replace(tzinfo=None))


async def test_due_deliveries_returns_only_the_head_of_each_url(store: SqliteStore) -> None:
    for i in range(3):
        await store.commit_poll("wf-1", None, [make_event(f"a{i}")], [plan("A", f"a{i}")])
    await store.commit_poll("wf-2", None, [make_event("b0")], [plan("B", "b0")])

    heads = await store.due_deliveries(T0)
    assert [(d.url_key, d.events[0].dedup_key) for d in heads] == [("A", "a0"), ("B", "b0")]

    await store.mark_sent(heads[0].id, T0)
    heads = await store.due_deliveries(T0)
    assert [(d.url_key, d.events[0].dedup_key) for d in heads] == [("A", "a1"), ("B", "b0")]


async def test_a_head_waiting_for_retry_holds_back_its_url_only(store: SqliteStore) -> None:
    for key, url in [("a0", "A"), ("a1", "A"), ("b0", "B")]:
        await store.commit_poll("wf", None, [make_event(key)], [plan(url, key)])
    a0 = (await store.due_deliveries(T0))[0]
    later = T0 + timedelta(seconds=30)
    await store.mark_failed(a0.id, T0, "HTTP 500", later)

    assert [d.url_key for d in await store.due_deliveries(T0)] == ["B"]
    retried = await store.due_deliveries(later)
    assert [(d.url_key, d.attempts, d.last_error) for d in retried] == [
        ("A", 1, "HTTP 500"),
        ("B", 0, None),
    ]
    assert retried[0].events[0].dedup_key == "a0"


async def test_maybe_delivered_attempts_are_counted_and_listed(store: SqliteStore) -> None:
    for key in ("a0", "b0"):
        await store.commit_poll("wf", None, [make_event(key)], [plan(key, key)])
    a0, b0 = await store.due_deliveries(T0)
    await store.mark_failed(a0.id, T0, "no answer", T0, maybe_delivered=True)
    await store.mark_failed(a0.id, T0, "HTTP 502", T0)
    await store.mark_sent(a0.id, T0)
    await store.mark_dead(b0.id, T0, "no answer", maybe_delivered=True)
    a, b = await store.deliveries_for(["a0", "b0"])
    assert (a.state, a.attempts, a.maybe_delivered) == ("sent", 3, 1)
    assert (b.state, b.attempts, b.maybe_delivered) == ("dead", 1, 1)
    (row_a,) = [r for r in await store.events_with_deliveries() if r.event.dedup_key == "a0"]
    assert row_a.deliveries[0].maybe_delivered == 1


async def test_a_version_1_file_gains_the_maybe_delivered_column(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    schema.apply_migrations(conn, schema.MIGRATIONS[:1])
    conn.close()
    s = await SqliteStore.open(path, clock=clock)
    try:
        await s.commit_poll("wf", None, [make_event("k")], [plan("u", "k")])
        (d,) = await s.due_deliveries(clock.now())
        assert d.maybe_delivered == 0
    finally:
        await s.close()


async def test_reading_the_queue_heads_costs_the_same_however_long_the_queues(
    store: SqliteStore,
) -> None:
    """The dispatcher reads the heads after every send, so a read must cost O(URLs), not
    O(pending rows): with ``GROUP BY url_key`` a 10,000-message backlog made draining it
    quadratic (issue 12 item 7). Counted in SQLite VM steps, which do not depend on timing."""

    async def backlog(start: int, stop: int) -> None:
        await asyncio.gather(
            *(
                store.commit_poll(
                    "wf", None, [make_event(f"k{i}")], [plan("A", f"k{i}"), plan("B", f"k{i}")]
                )
                for i in range(start, stop)
            )
        )

    async def steps_of_one_read() -> tuple[int, list[str]]:
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0  # go on

        conn = store._connection()
        conn.set_progress_handler(count, 1)
        try:
            heads = await store.due_deliveries(T0)
        finally:
            conn.set_progress_handler(None, 1)
        return steps, [d.events[0].dedup_key for d in heads]

    await backlog(0, 5)
    short, heads = await steps_of_one_read()
    assert heads == ["k0", "k0"]
    await backlog(5, 1000)
    long, heads = await steps_of_one_read()
    assert heads == ["k0", "k0"]
    assert long <= short + 10, (short, long)  # GROUP BY url_key: ~40,000 against ~250


async def test_due_deliveries_honours_the_limit_oldest_first(store: SqliteStore) -> None:
    for url in "CBA":
        await store.commit_poll("wf", None, [make_event(url)], [plan(url, url)])
    assert [d.url_key for d in await store.due_deliveries(T0, limit=2)] == ["C", "B"]


async def test_dead_and_sent_deliveries_leave_the_queue_and_show_in_stats(
    store: SqliteStore, clock: FakeClock
) -> None:
    for key in ("k1", "k2", "k3"):
        await store.commit_poll("wf", None, [make_event(key)], [plan(key, key)])
        clock.advance(10)
    d1, d2, _ = await store.due_deliveries(clock.now())
    await store.mark_sent(d1.id, clock.now())
    await store.mark_dead(d2.id, clock.now(), "HTTP 410 gone")

    stats = await store.outbox_stats(clock.now())
    assert stats == OutboxStats(pending=1, dead=1, oldest_pending_age_s=10.0)
    assert [d.url_key for d in await store.due_deliveries(clock.now())] == ["k3"]
    (dead,) = await store.list_deliveries(state="dead")
    assert (dead.attempts, dead.last_error) == (1, "HTTP 410 gone")
    (sent,) = await store.list_deliveries(state="sent")
    assert (sent.attempts, sent.sent_at) == (1, clock.now())
    assert [d.url_key for d in await store.list_deliveries(limit=2)] == ["k3", "k2"]


async def test_outbox_stats_of_an_empty_outbox(store: SqliteStore) -> None:
    assert await store.outbox_stats(T0) == OutboxStats(pending=0, dead=0, oldest_pending_age_s=0.0)


async def test_marks_do_not_resurrect_finished_deliveries(store: SqliteStore) -> None:
    await store.commit_poll("wf", None, [make_event("k")], [plan("u", "k")])
    (d,) = await store.due_deliveries(T0)
    await store.mark_sent(d.id, T0)
    await store.mark_failed(d.id, T0, "late failure", T0)
    await store.mark_dead(d.id, T0, "late death")
    (after,) = await store.deliveries_for(["k"])
    assert (after.state, after.attempts, after.last_error) == ("sent", 1, None)


async def test_recent_events_tail_and_cursor(store: SqliteStore) -> None:
    for i in range(5):
        await store.commit_poll("wf", None, [make_event(f"k{i}")], [])
    tail = await store.recent_events(limit=2)
    assert [s.event.dedup_key for s in tail] == ["k3", "k4"]
    assert tail[0].seq < tail[1].seq
    first = (await store.recent_events(limit=5))[0].seq
    page = await store.recent_events(after_seq=first, limit=2)
    assert [s.event.dedup_key for s in page] == ["k1", "k2"]
    assert await store.recent_events(after_seq=tail[1].seq) == []


async def test_events_keep_every_field_through_json(store: SqliteStore) -> None:
    event = make_event(
        "full",
        severity=Severity.WARNING,
        started_at=T0 - timedelta(minutes=3),
        ended_at=T0,
        late_since=T0 - timedelta(minutes=1),
        details={"nested": {"x": [1, 2]}, "text": "ünïcode"},
    )
    await store.commit_poll("wf", None, [event], [])
    (stored,) = await store.recent_events()
    assert stored.event == event


async def test_events_with_deliveries_lists_each_events_delivery_states(
    store: SqliteStore,
) -> None:
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


async def test_silences_add_list_expire_remove(store: SqliteStore) -> None:
    s1 = await store.add_silence(
        Silence(
            until=T0 + timedelta(hours=1),
            target="prod-*",
            labels={"env": "prod"},
            starts_at=T0 - timedelta(minutes=5),
            creator="alice",
            comment="maintenance",
        )
    )
    s2 = await store.add_silence(Silence(until=T0 - timedelta(hours=1), kinds=("task.*",)))
    assert [s.id for s in await store.list_silences()] == [s1.id, s2.id]
    (active,) = await store.list_silences(active_at=T0)
    assert active == s1
    assert (active.target, dict(active.labels), active.creator, active.comment) == (
        "prod-*",
        {"env": "prod"},
        "alice",
        "maintenance",
    )
    assert (active.created_at, active.starts_at) == (T0, T0 - timedelta(minutes=5))
    expired = await store.expire_silence(int(s1.id or 0), T0)
    assert expired is not None and expired.until == T0
    assert await store.list_silences(active_at=T0) == []
    assert await store.expire_silence(999, T0) is None
    assert await store.remove_silence(int(s1.id or 0)) is True
    assert await store.remove_silence(int(s1.id or 0)) is False
    assert [s.id for s in await store.list_silences()] == [s2.id]


async def test_acks_replace_end_and_list(store: SqliteStore) -> None:
    ack = Acknowledgement("t/wf-1", "alice", "on it", T0, T0 + timedelta(hours=2))
    await store.set_ack(ack)
    assert await store.list_acks(active_at=T0) == [ack]
    assert await store.end_ack("t/wf-1", T0 + timedelta(minutes=1)) is True
    assert await store.end_ack("t/wf-1", T0 + timedelta(minutes=1)) is False
    assert await store.list_acks(active_at=T0 + timedelta(minutes=2)) == []
    again = Acknowledgement("t/wf-1", "bob", "", T0 + timedelta(minutes=3), T0 + timedelta(hours=1))
    await store.set_ack(again)
    assert await store.list_acks() == [again]


async def test_health_round_trips_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    s = await SqliteStore.open(path)
    assert await s.load_kv("health/prod") is None
    await s.save_kv("health/prod", {"ok": False, "failures": 3})
    await s.save_kv("health/prod", {"ok": True, "failures": 0})
    await s.close()
    s = await SqliteStore.open(path)
    try:
        assert await s.load_kv("health/prod") == {"ok": True, "failures": 0}
    finally:
        await s.close()


async def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    clock = FakeClock()
    s = await SqliteStore.open(path, clock=clock)
    await s.commit_poll("wf", make_state("Running"), [make_event("k")], [plan("u", "k")])
    (d,) = await s.due_deliveries(T0)
    await s.mark_failed(d.id, T0, "HTTP 502", T0 + timedelta(seconds=5))
    await s.close()

    s = await SqliteStore.open(path, clock=clock)
    try:
        assert await s.load_state("wf") == make_state("Running")
        (again,) = await s.due_deliveries(T0 + timedelta(seconds=5))
        assert (again.id, again.attempts, again.last_error) == (d.id, 1, "HTTP 502")
        assert again.events == d.events
    finally:
        await s.close()


async def test_data_written_by_another_process_is_read_back(tmp_path: Path) -> None:
    """One process writes and exits normally; a fresh connection here reads it all."""
    path = tmp_path / "w.db"
    script = textwrap.dedent(
        f"""
        import asyncio
        from tests.store.factories import make_event, make_state
        from watcher.core.ports import PlannedDelivery
        from watcher.store.sqlite import SqliteStore

        async def main():
            s = await SqliteStore.open({str(path)!r})
            await s.commit_poll(
                "wf-9", make_state("Success"), [make_event("x1"), make_event("x2")],
                [PlannedDelivery("chat", ("x1", "x2"))],
            )
            await s.save_kv("t", {{"t": 1}})
            await s.close()

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, env=env, timeout=60)

    s = await SqliteStore.open(path)
    try:
        assert await s.load_state("wf-9") == make_state("Success")
        assert [e.event.dedup_key for e in await s.recent_events()] == ["x1", "x2"]
        (d,) = await s.deliveries_for(["x1"])
        assert [e.dedup_key for e in d.events] == ["x1", "x2"]
        assert await s.load_kv("t") == {"t": 1}
    finally:
        await s.close()


async def test_another_connection_sees_commits_while_the_store_is_open(
    store: SqliteStore,
) -> None:
    await store.commit_poll("wf", make_state(seq=1), [make_event("k")], [plan("u", "k")])
    with sqlite3.connect(store.path) as reader:
        assert reader.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 1
        assert reader.execute("SELECT dedup_key FROM events").fetchall() == [("k",)]


async def test_prune_removes_old_finished_rows_but_never_pending_ones(
    store: SqliteStore, clock: FakeClock
) -> None:
    await store.commit_poll("wf", None, [make_event("sent")], [plan("u", "sent")])
    await store.commit_poll("wf", None, [make_event("pending")], [plan("v", "pending")])
    await store.commit_poll("wf", None, [make_event("bare")], [])
    (sent_d, _) = await store.due_deliveries(T0)
    await store.mark_sent(sent_d.id, T0)
    last_seq = (await store.recent_events())[-1].seq

    removed = await store.prune(T0 + timedelta(days=1))
    assert removed == 3  # the sent delivery, its event and the bare event
    assert [e.event.dedup_key for e in await store.recent_events()] == ["pending"]
    assert [d.state for d in await store.list_deliveries()] == ["pending"]
    # seq is never reused after pruning, so feed cursors stay valid.
    await store.commit_poll("wf", None, [make_event("later")], [])
    assert (await store.recent_events())[-1].seq > last_seq


async def test_ping_and_close(tmp_path: Path) -> None:
    s = await SqliteStore.open(tmp_path / "w.db")
    assert await s.ping() is True
    await s.close()
    await s.close()  # idempotent
    assert await s.ping() is False
    with pytest.raises(RuntimeError, match="closed"):
        await s.load_state("wf")
