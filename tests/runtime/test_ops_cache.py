"""The daemon's cache of run-time silences and acknowledgements (watcher.runtime.ops).

Real SQLite files; a second store connection plays the CLI writing while the daemon runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

from tests.store.factories import T0, TARGET, FakeClock, make_event
from watcher.core.acks import Acknowledgement
from watcher.core.silences import Silence
from watcher.runtime.ops import OpsState
from watcher.store.sqlite import SqliteStore


async def test_a_write_from_another_process_is_picked_up_and_applied(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    daemon_store = await SqliteStore.open(tmp_path / "w.sqlite3", clock=clock)
    cli_store = await SqliteStore.open(tmp_path / "w.sqlite3", clock=clock)
    counts: list[int] = []
    ops = OpsState(daemon_store, clock, on_count=counts.append)
    ops.config_silences = [Silence(until=T0 + timedelta(days=1), target="nothing", id="config:1")]
    await ops.refresh()
    loop = asyncio.create_task(ops.run(period=0.05))
    try:
        await cli_store.add_silence(
            Silence(until=T0 + timedelta(hours=1), kinds=("task.*",), creator="a", comment="c")
        )
        await cli_store.add_silence(  # planned: listed, not yet in force
            Silence(until=T0 + timedelta(hours=3), starts_at=T0 + timedelta(hours=2))
        )
        await cli_store.set_ack(
            Acknowledgement(f"{TARGET.name}/wf-1", "al", "n", T0, T0 + timedelta(hours=1))
        )
        for _ in range(100):
            if len(ops.stored_silences) == 2 and ops.acks:
                break
            await asyncio.sleep(0.02)
        assert [s.id for s in ops.stored_silences] == ["1", "2"]
        assert counts[-1] == 2  # config:1 and silence 1; silence 2 starts later

        task, workflow = make_event("a"), make_event("b", kind="workflow.started")
        marked = ops.annotate(f"{TARGET.name}/wf-1", [task, workflow], T0)
        assert marked[0].details["silenced_by"] == "1"
        assert "silenced_by" not in marked[1].details
        assert marked[1].details["acknowledged"]["text"] == "acknowledged by al: n"
        plan = ops.planner([], [])
        assert plan([task], T0) == []

        await ops.committed(f"{TARGET.name}/wf-1", [workflow], T0 + timedelta(minutes=1))
        assert ops.ack_for(f"{TARGET.name}/wf-1", T0 + timedelta(minutes=1)) is None
        (ended,) = await cli_store.list_acks()
        assert ended.ended_at == T0 + timedelta(minutes=1)
    finally:
        loop.cancel()
        await daemon_store.close()
        await cli_store.close()


async def test_a_failed_refresh_keeps_the_cache_and_the_loop(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store = await SqliteStore.open(tmp_path / "w.sqlite3", clock=clock)
    await store.add_silence(Silence(until=T0 + timedelta(hours=1)))
    ops = OpsState(store, clock)
    await ops.refresh()
    loop = asyncio.create_task(ops.run(period=0.02))
    try:
        other = sqlite3.connect(tmp_path / "w.sqlite3")
        other.execute("ALTER TABLE acks RENAME TO acks_gone")  # every read of acks now fails
        other.commit()
        await asyncio.sleep(0.1)
        assert not loop.done()  # logged, not crashed
        assert [s.id for s in ops.stored_silences] == ["1"]
        other.execute("ALTER TABLE acks_gone RENAME TO acks")
        other.commit()
        other.close()
        await store.add_silence(Silence(until=T0 + timedelta(hours=1)))
        for _ in range(100):
            if len(ops.stored_silences) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(ops.stored_silences) == 2
    finally:
        loop.cancel()
        await store.close()
