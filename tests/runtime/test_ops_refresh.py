"""OpsState's refresh loop survives any store backend's error (not only sqlite3's)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import psycopg
from structlog.testing import capture_logs

from tests.store.factories import T0, FakeClock
from watcher.core.silences import Silence
from watcher.runtime.ops import OpsState
from watcher.store.memory import MemoryStore


class FlakyStore(MemoryStore):
    """A MemoryStore whose silence reads fail like a PostgreSQL store during a restart
    (the fault cannot be made with the memory store otherwise)."""

    failing = True

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        if self.failing:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await super().list_silences(active_at=active_at)


async def test_a_postgres_error_is_logged_and_the_next_refresh_picks_changes_up() -> None:
    store = FlakyStore(clock=FakeClock())
    ops = OpsState(store, FakeClock())
    await store.add_silence(Silence(until=T0 + timedelta(hours=1), target="prod"))
    with capture_logs() as logs:
        task = asyncio.create_task(ops.run(period=0.01))
        try:
            for _ in range(200):
                if any(r["event"] == "silences.refresh_failed" for r in logs):
                    break
                await asyncio.sleep(0.01)
            assert not task.done(), "the refresh loop died on a non-sqlite3 error"
            store.failing = False
            for _ in range(200):
                if ops.stored_silences:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
    failed = [r for r in logs if r["event"] == "silences.refresh_failed"]
    assert failed and failed[0]["log_level"] == "error"
    assert [s.target for s in ops.stored_silences] == ["prod"]
