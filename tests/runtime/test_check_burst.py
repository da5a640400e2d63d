"""`check` is the daemon's poller in burst mode: one round of the same jobs, against the
store it is given (never the daemon's state file), here driven against the simulator."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.harness import base_settings
from watcher.config import settings_from_mapping
from watcher.core.ports import SystemClock
from watcher.runtime import oneshot
from watcher.runtime.app import STORE_FILE
from watcher.runtime.registry import KeyKind, WatchKey
from watcher.simulator import start_simulator
from watcher.store.sqlite import SqliteStore


async def test_check_runs_the_poller_once_against_the_given_store(tmp_path: Path) -> None:
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        settings = settings_from_mapping(base_settings(sim, tmp_path / "state", []))
        store = await SqliteStore.open(tmp_path / "given.sqlite3", clock=SystemClock())
        try:
            code, text = await oneshot.check(settings, as_json=True, store=store)
            states = await store.load_all_states()
        finally:
            await store.close()
    [workflow] = json.loads(text)["workflows"]
    assert code == 1 and workflow["phase"] == "Pending"
    # The poller committed its state (as the daemon would) into the store it was given...
    keys = [WatchKey.decode(k) for k in states]
    assert [k.workflow_id for k in keys if k and k.kind is KeyKind.WORKFLOW] == [
        workflow["workflow_id"]
    ]
    # ... and never into the daemon's state file.
    assert not (tmp_path / "state" / STORE_FILE).exists()
