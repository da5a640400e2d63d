"""SqliteStore.self_check: identity of the file, a probe write, failures since the last check."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.faults.disk import fill, small_disk  # noqa: F401 - the fixture
from watcher.store.sqlite import SqliteStore


async def test_a_full_disk_is_reported_until_space_is_freed(small_disk: Path) -> None:  # noqa: F811
    store = await SqliteStore.open(small_disk / "s.sqlite3")
    assert await store.self_check() is None
    filler = fill(small_disk)
    with pytest.raises(Exception, match="full"):
        await store.save_kv("big", {"v": "x" * 50_000})
    problem = await store.self_check()
    assert problem is not None and "disk is full" in problem and str(store.path) in problem
    filler.unlink()
    assert await store.self_check() is None
    await store.close()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_deleted_or_replaced_file_is_reported(tmp_path: Path, how: str) -> None:
    store = await SqliteStore.open(tmp_path / "s.sqlite3")
    if how == "deleted":
        store.path.unlink()
    else:
        shutil.copyfile(store.path, tmp_path / "copy")
        os.replace(tmp_path / "copy", store.path)
    problem = await store.self_check()
    assert problem is not None and f"was {how}" in problem
    assert await store.self_check() == problem  # it stays wrong: no silent fresh start
    await store.close()
