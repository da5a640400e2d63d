"""Schema v2 (run-time silences' start and creator, acknowledgements) upgrades a v1 file
that already holds a silence without losing it."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from tests.store.factories import T0
from watcher.store import schema
from watcher.store.sqlite import SqliteStore


async def test_a_v1_file_with_a_silence_opens_as_v2(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    assert schema.apply_migrations(conn, schema.MIGRATIONS[:1]) == 1
    conn.execute(
        "INSERT INTO silences (matcher, until, reason, created_at) VALUES (?, ?, ?, ?)",
        ('{"target": "prod-*"}', (T0 + timedelta(hours=1)).isoformat(), "old", T0.isoformat()),
    )
    conn.close()

    store = await SqliteStore.open(path)
    try:
        (old,) = await store.list_silences()
        assert (old.id, old.target, old.kinds, old.comment) == ("1", "prod-*", ("*",), "old")
        assert (old.creator, old.starts_at, dict(old.labels)) == ("", None, {})
        assert old.active(T0)
        assert await store.list_acks() == []
    finally:
        await store.close()
    check = sqlite3.connect(path)
    assert schema.current_version(check) == schema.LATEST_VERSION  # v2 and later
    check.close()
