"""``state migrate``: a real SQLite file copied into a real PostgreSQL database through the
CLI, then read back through the PostgreSQL store (watcher/state_cli.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tests.store.factories import T0, FakeClock, make_event, make_state
from watcher.cli import cli
from watcher.core.acks import Acknowledgement
from watcher.core.ports import PlannedDelivery, UrlKeys
from watcher.core.silences import Silence
from watcher.store.postgres import PostgresStore
from watcher.store.sqlite import SqliteStore

URL_KEYS = UrlKeys(salt="5a17", fingerprints={"chat": "f1", "mail": "f2"})


async def _source(path: Path) -> None:
    """Two workflows, interleaved commits to two URLs; one sent, one dead, three pending."""
    store = await SqliteStore.open(path, clock=FakeClock())
    try:
        await store.commit_poll(
            "wf-1",
            make_state(uid="wf-1", seq=1),
            [make_event("a1"), make_event("a2")],
            [PlannedDelivery("chat", ("a1", "a2")), PlannedDelivery("mail", ("a1", "a2"))],
        )
        await store.commit_poll(
            "wf-2",
            make_state(uid="wf-2", seq=7),
            [make_event("b1"), make_event("q1", kind="task.queued")],
            [PlannedDelivery("chat", ("b1",))],
        )
        await store.commit_poll(
            "wf-1",
            make_state("Success", uid="wf-1", seq=2),
            [make_event("a3")],
            [PlannedDelivery("chat", ("a3",)), PlannedDelivery("mail", ("a3",))],
        )
        sent = {d.events[0].dedup_key + d.url_key: d for d in await store.list_deliveries(limit=99)}
        await store.mark_sent(sent["a1chat"].id, T0)
        await store.mark_dead(sent["b1chat"].id, T0, "HTTP 410")
        await store.add_silence(
            Silence(until=T0 + timedelta(days=3), target="prod-*", comment="change freeze")
        )
        await store.set_ack(Acknowledgement("wf-1", "alice", "on it", T0, T0 + timedelta(hours=4)))
        await store.set_ack(Acknowledgement("wf-2", "bob", "", T0, T0 + timedelta(hours=4)))
        await store.end_ack("wf-2", T0 + timedelta(minutes=5))
        await store.rekey_deliveries({}, URL_KEYS)
    finally:
        await store.close()


async def _read_source(path: Path) -> tuple[dict[str, Any], list[str]]:
    src = await SqliteStore.open(path, clock=FakeClock())
    try:
        events = [s.event.dedup_key for s in await src.recent_events(limit=99)]
        return dict(await src.load_all_states()), events
    finally:
        await src.close()


def test_migrate_copies_a_sqlite_install_into_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    # Synchronous: the command runs its own event loop, as from a shell.
    path = tmp_path / "watcher.sqlite3"
    asyncio.run(_source(path))
    want_states, want_events = asyncio.run(_read_source(path))

    result = CliRunner().invoke(cli, ["state", "migrate", "--from", str(path), "--to", pg_dsn])
    assert result.exit_code == 0, result.output
    assert (
        "copied 2 workflow states, 5 events, 3 pending deliveries, 1 silences, 2 ack"
        in result.output
    )
    asyncio.run(_check_destination(pg_dsn, want_states, want_events))

    again = CliRunner().invoke(cli, ["state", "migrate", "--from", str(path), "--to", pg_dsn])
    assert again.exit_code == 2
    assert "already holds" in again.output


async def _check_destination(dsn: str, want_states: dict[str, Any], want_events: list[str]) -> None:
    dst = await PostgresStore.open(dsn, clock=FakeClock())
    try:
        assert await dst.load_all_states() == want_states
        got = [s.event.dedup_key for s in await dst.recent_events(limit=99)]
        assert got == want_events  # every event, in the same order
        # Only what was still queued is queued again, whole and in each URL's order; the
        # sent and the dead ones are history (their events are stored: not announced again).
        pending = sorted(await dst.list_deliveries(limit=99, state="pending"), key=lambda d: d.id)
        assert [(d.url_key, [e.dedup_key for e in d.events]) for d in pending] == [
            ("mail", ["a1", "a2"]),
            ("chat", ["a3"]),
            ("mail", ["a3"]),
        ]
        assert all(d.attempts == 0 for d in pending)
        assert await dst.list_deliveries(limit=99, state="sent") == []
        (silence,) = await dst.list_silences()
        assert (silence.target, silence.comment, silence.until) == (
            "prod-*",
            "change freeze",
            T0 + timedelta(days=3),
        )
        acks = {a.workflow_key: a for a in await dst.list_acks()}
        assert acks["wf-1"].by == "alice" and acks["wf-1"].ended_at is None
        assert acks["wf-2"].ended_at == T0 + timedelta(minutes=5)
        assert await dst.load_url_keys() == URL_KEYS
    finally:
        await dst.close()


def test_migrate_says_why_it_cannot_reach_the_database(tmp_path: Path) -> None:
    path = tmp_path / "watcher.sqlite3"
    path.touch()
    dsn = "host=127.0.0.1 port=1 user=watcher password=hunter2-secret connect_timeout=2"
    result = CliRunner().invoke(cli, ["state", "migrate", "--from", str(path), "--to", dsn])
    assert result.exit_code == 2
    assert "cannot open the PostgreSQL store" in result.output
    assert "hunter2" not in result.output
