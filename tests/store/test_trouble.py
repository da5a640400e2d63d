"""Store trouble at open names the file and the fix (real files, a real lock)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from watcher.store.sqlite import SqliteStore
from watcher.store.trouble import StoreError


async def test_a_state_file_locked_by_another_process_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = await SqliteStore.open(path)
    await store.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError) as caught:
            await SqliteStore.open(path, busy_timeout_ms=50)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert caught.value.kind == "locked"
    assert str(path) in str(caught.value) and "one watcher per state_dir" in str(caught.value)


async def test_a_directory_where_the_file_should_be_is_explicit(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    path.mkdir()
    with pytest.raises(StoreError) as caught:
        await SqliteStore.open(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
