"""Migrations upgrade old files in order, atomically, and refuse files from the future."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.store import schema
from watcher.store.schema import Migration, SchemaTooNewError, apply_migrations
from watcher.store.sqlite import SqliteStore

V2 = Migration(2, ("CREATE TABLE extra (x INTEGER)", "INSERT INTO extra VALUES (42)"))


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    yield c
    c.close()


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_file_gets_every_table(conn: sqlite3.Connection) -> None:
    assert apply_migrations(conn) == schema.LATEST_VERSION
    assert {"schema_version", "states", "events", "deliveries", "silences", "kv"} <= tables(conn)


def test_an_old_file_is_upgraded_in_order_once(conn: sqlite3.Connection) -> None:
    assert apply_migrations(conn, schema.MIGRATIONS[:1]) == 1
    assert apply_migrations(conn, [*schema.MIGRATIONS[:1], V2]) == 2
    assert apply_migrations(conn, [*schema.MIGRATIONS[:1], V2]) == 2  # a no-op now
    assert conn.execute("SELECT x FROM extra").fetchall() == [(42,)]


def test_a_failing_migration_rolls_back_to_the_previous_version(
    conn: sqlite3.Connection,
) -> None:
    apply_migrations(conn, schema.MIGRATIONS[:1])
    broken = Migration(2, ("CREATE TABLE half (x INTEGER)", "THIS IS NOT SQL"))
    with pytest.raises(sqlite3.OperationalError):
        apply_migrations(conn, [*schema.MIGRATIONS[:1], broken])
    assert schema.current_version(conn) == 1
    assert "half" not in tables(conn)
    assert not conn.in_transaction


def test_migrations_must_be_numbered_in_order(conn: sqlite3.Connection) -> None:
    with pytest.raises(ValueError, match="numbered"):
        apply_migrations(conn, [V2])


async def test_a_file_from_a_newer_watcher_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    s = await SqliteStore.open(path)
    await s.close()
    with sqlite3.connect(path) as c:
        c.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SchemaTooNewError, match="99"):
        await SqliteStore.open(path)
