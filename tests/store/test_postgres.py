"""PostgresStore specifics the contract cannot see: migrations and commit-order of ``seq``."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from tests.store.factories import T0, FakeClock, make_event, make_state
from watcher.core.ports import PlannedDelivery
from watcher.store import pg_schema
from watcher.store.postgres import CLAIM_HEADS_SQL, PostgresStore
from watcher.store.schema import SchemaTooNewError


async def test_replicas_starting_at_once_migrate_exactly_once(pg_dsn: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(pg_dsn, pool_size=1) for _ in range(4)))
    try:
        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute("SELECT version FROM schema_version").fetchall()
        assert rows == [(pg_schema.LATEST_VERSION,)]
        assert all([await s.ping() for s in stores])
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(pg_dsn: str) -> None:
    await (await PostgresStore.open(pg_dsn)).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SchemaTooNewError, match="schema version 99"):
        await PostgresStore.open(pg_dsn)


async def test_the_ha_columns_are_already_there(pg_dsn: str) -> None:
    await (await PostgresStore.open(pg_dsn)).close()
    with psycopg.connect(pg_dsn) as conn:
        columns = {
            (t, c)
            for t, c in conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema()"
            ).fetchall()
        }
    assert {("deliveries", "claimed_by"), ("deliveries", "claim_until")} <= columns
    assert {("target_leases", c) for c in ("target", "holder", "lease_until", "epoch")} <= columns


async def test_seq_follows_commit_order(pg_dsn: str) -> None:
    """A commit that starts while another append is open waits for it, so its events get
    the larger seq: a feed reader resuming after the largest seq it saw misses nothing."""
    store = await PostgresStore.open(pg_dsn, clock=FakeClock(), pool_size=2)
    try:
        other = await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
        try:
            async with other.transaction():
                # What a second replica's commit_poll does, held open mid-transaction.
                await other.execute("SELECT pg_advisory_xact_lock(%s)", (pg_schema.APPEND_LOCK,))
                await other.execute(
                    "INSERT INTO events (dedup_key, event_id, kind, severity, workflow_key, "
                    "observed_at, data) VALUES ('first', 'x', 'task.started', 'info', 'wf', "
                    "now(), '{}')"
                )
                late = asyncio.create_task(
                    store.commit_poll(
                        "wf", None, [make_event("second")], [PlannedDelivery("u", ("second",))]
                    )
                )
                await asyncio.sleep(0.5)
                assert not late.done(), "commit_poll did not wait for the open append"
            await late
        finally:
            await other.close()
        with psycopg.connect(pg_dsn) as conn:
            order = conn.execute("SELECT dedup_key FROM events ORDER BY seq").fetchall()
        assert order == [("first",), ("second",)]
    finally:
        await store.close()


async def _wait_ping(store: PostgresStore, want: bool, within_s: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while await store.ping() is not want:
        assert loop.time() - start < within_s, f"ping did not become {want} in {within_s} s"
        await asyncio.sleep(0.2)
    return loop.time() - start


@pytest.mark.timeout(300)
async def test_the_store_reports_an_outage_and_recovers_after_a_server_restart(
    pg_server: object,
) -> None:
    """ping (what /readyz shows) is False while the server is down; the pool reconnects
    by itself when it is back, and nothing committed before is lost."""
    from tests import pg

    try:
        server = pg.start_private_cluster()
    except pg.PgUnavailable as exc:
        pytest.fail(f"PostgreSQL unavailable: {exc}", pytrace=False)
    try:
        store = await PostgresStore.open(server.dsn, clock=FakeClock(), pool_size=2)
        try:
            await store.commit_poll("wf", make_state(seq=1), [make_event("before")], [])
            await asyncio.to_thread(server.halt, "fast")
            down_s = await _wait_ping(store, False, 30)
            with pytest.raises(psycopg.OperationalError):
                await store.load_state("wf")
            await asyncio.to_thread(server.start)
            up_s = await _wait_ping(store, True, 15)  # psycopg-pool default: minutes
            print(f"outage seen after {down_s:.1f} s, recovered {up_s:.1f} s after restart")
            assert await store.load_state("wf") == make_state(seq=1)
            new = await store.commit_poll("wf", make_state(seq=2), [make_event("after")], [])
            assert [e.dedup_key for e in new] == ["after"]
        finally:
            await store.close()
    finally:
        server.stop()


async def test_self_check_reports_a_failed_commit_once(pg_dsn: str) -> None:
    """The watchdog learns of a commit that failed between two checks (as with SQLite's
    full disk), in one line without the DSN; the next check is clean again."""
    store = await PostgresStore.open(pg_dsn, clock=FakeClock(), pool_size=2)
    try:
        assert await store.self_check() is None
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                b"CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
                b"$$BEGIN RAISE EXCEPTION 'disk on fire'; END$$"
            )
            conn.execute(
                b"CREATE TRIGGER boom BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION boom()"
            )
        with pytest.raises(psycopg.Error, match="disk on fire"):
            await store.commit_poll("wf", make_state(), [make_event("k")], [])
        problem = await store.self_check()
        assert problem is not None and problem.startswith("PostgreSQL store: disk on fire")
        assert "password" not in problem and pg_dsn not in problem
        assert await store.self_check() is None  # reported once; the probe itself works
    finally:
        await store.close()


async def test_migration_3_adds_the_columns_of_sqlite_v2_and_v3(pg_dsn: str) -> None:
    """A database made by the first PostgreSQL release (version 1) is brought up to date."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for statement in pg_schema.MIGRATIONS[0].statements:
            conn.execute(statement.encode())
        conn.execute(b"CREATE TABLE schema_version (version integer NOT NULL)")
        conn.execute(b"INSERT INTO schema_version (version) VALUES (1)")
    store = await PostgresStore.open(pg_dsn, clock=FakeClock(), pool_size=1)
    try:
        await store.commit_poll(
            "wf", make_state(), [make_event("k")], [PlannedDelivery("u", ("k",))]
        )
        (head,) = await store.due_deliveries(FakeClock().now())
        await store.mark_failed(
            head.id, head.created_at, "timeout", head.created_at, maybe_delivered=True
        )
        (row,) = await store.deliveries_for(["k"])
        assert row.maybe_delivered == 1
        assert await store.list_acks() == []
    finally:
        await store.close()
    with psycopg.connect(pg_dsn) as conn:
        version = conn.execute("SELECT version FROM schema_version").fetchall()
    assert version == [(pg_schema.LATEST_VERSION,)]


def _rows_read(node: dict[str, Any], table: str) -> int:
    """Rows the scans of ``table`` produced or filtered out in an EXPLAIN ANALYZE plan."""
    own = 0
    if node.get("Relation Name") == table:
        rows = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        own = rows * node["Actual Loops"]
    return own + sum(_rows_read(child, table) for child in node.get("Plans", ()))


async def test_claiming_the_queue_heads_reads_one_row_per_url_not_the_backlog(
    pg_dsn: str,
) -> None:
    """The dispatcher claims the heads after every send, so a claim must read O(URLs) rows,
    not every pending one: with ``GROUP BY url_key`` a 10,000-message backlog made draining
    it quadratic (issue 12 item 7). Counted in the executed plan, not timed."""
    store = await PostgresStore.open(pg_dsn, clock=FakeClock(), pool_size=2)
    try:
        await asyncio.gather(
            *(
                store.commit_poll(
                    "wf",
                    None,
                    [make_event(f"k{i}")],
                    [PlannedDelivery("A", (f"k{i}",)), PlannedDelivery("B", (f"k{i}",))],
                )
                for i in range(500)
            )
        )
        params = {"now": T0, "me": "someone", "limit": 10, "claim": 30.0}
        with psycopg.connect(pg_dsn) as conn:
            conn.execute("ANALYZE deliveries")
            # 1,000 rows is small enough for the planner to prefer reading the whole table,
            # which it does not at the sizes this is about; make it plan as it would there.
            conn.execute("SET enable_seqscan = off")
            conn.execute("SET enable_bitmapscan = off")
            explain = f"EXPLAIN (ANALYZE, FORMAT JSON) {CLAIM_HEADS_SQL}"
            (plan,) = conn.execute(explain.encode(), params).fetchone()  # type: ignore[misc]
            conn.rollback()  # EXPLAIN ANALYZE ran the claim: undo it
        assert _rows_read(plan[0]["Plan"], "deliveries") <= 20  # GROUP BY url_key: 1,000+
        heads = await store.due_deliveries(T0)
        assert [(d.url_key, d.events[0].dedup_key) for d in heads] == [("A", "k0"), ("B", "k0")]
    finally:
        await store.close()
