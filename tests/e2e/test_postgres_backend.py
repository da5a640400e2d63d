"""The whole daemon on ``[state] backend = "postgres"``: a scenario end to end, real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.harness import running
from tests.e2e.test_scenarios import EXPECTED, play
from watcher.runtime import oneshot
from watcher.store import STORE_FILE
from watcher.store.postgres import PostgresStore


async def test_a_scenario_runs_end_to_end_on_the_postgres_store(
    tmp_path: Path, pg_dsn: str
) -> None:
    def on_postgres(raw: dict[str, Any]) -> None:
        raw["state"] = {"backend": "postgres", "dsn": pg_dsn, "pool_size": 3}

    async with running(tmp_path, ["clean_upgrade"], configure=on_postgres) as h:
        assert isinstance(h.daemon.store, PostgresStore)
        await play(h, "clean_upgrade")
        assert await h.webhook_events() == EXPECTED["clean_upgrade"]
        assert h.email_events() == EXPECTED["clean_upgrade"]
        stats = await h.daemon.store.outbox_stats(h.clock.now())
        assert stats.pending == 0 and stats.dead == 0
        assert await h.daemon.store.load_all_states()
        settings = h.daemon.settings
    # The `events` command reads the same database (no SQLite file needed).
    listing = json.loads(await oneshot.events(settings, limit=100, as_json=True))
    kinds = [row["event"]["kind"] for row in listing]
    assert [k for k in kinds if k != "task.queued"] == [
        k for msg in EXPECTED["clean_upgrade"] for k in msg
    ]
    assert {d["state"] for row in listing for d in row["deliveries"]} == {"sent"}
    assert not (tmp_path / "state" / STORE_FILE).exists()  # no SQLite file on the side


async def test_check_store_reports_an_unreachable_server_in_one_line(pg_dsn: str) -> None:
    from tests.pg import free_port
    from watcher.config import settings_from_mapping
    from watcher.core.ports import SystemClock
    from watcher.store import check_store

    def settings(dsn: str) -> Any:
        return settings_from_mapping({"state": {"backend": "postgres", "dsn": dsn}})

    assert await check_store(settings(pg_dsn), SystemClock()) == []
    bad = f"postgresql://watcher:PLANTED-PW-99@127.0.0.1:{free_port()}/w?connect_timeout=2"
    (problem,) = await check_store(settings(bad), SystemClock())
    assert problem.startswith("state.dsn: cannot open the PostgreSQL store: ")
    assert "PLANTED-PW" not in problem and "\n" not in problem
    (problem,) = await check_store(settings("not a dsn PLANTED-PW-99"), SystemClock())
    assert problem == "state.dsn: cannot open the PostgreSQL store: " + (
        "state.dsn is not a valid PostgreSQL DSN"
    )
    assert await check_store(settings_from_mapping({}), SystemClock()) == []
