"""Durable state behind ``watcher.core.ports.Store``: SQLite (the zero-setup default) or a
shared PostgreSQL database, chosen by ``[state] backend``.

Kept apart from the core so the core stays free of I/O. ``open_store`` is the one place that
turns the settings into a store, so the daemon does not know which backend it runs on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcher.config import Settings
    from watcher.core.ports import Clock
    from watcher.store.postgres import PostgresStore
    from watcher.store.sqlite import SqliteStore

STORE_FILE = "watcher.sqlite3"


async def open_store(settings: Settings, clock: Clock) -> SqliteStore | PostgresStore:
    """Open (and migrate) the store the settings name."""
    state = settings.state
    if state.backend == "postgres":
        from watcher.store.postgres import PostgresStore  # noqa: PLC0415  (psycopg: only when used)

        if state.dsn is None:  # the settings validator already refuses this
            raise ValueError('[state] backend "postgres" needs a dsn')
        return await PostgresStore.open(
            state.dsn.get_secret_value(), clock=clock, pool_size=state.pool_size
        )
    from watcher.store.sqlite import SqliteStore  # noqa: PLC0415

    return await SqliteStore.open(Path(settings.state_dir) / STORE_FILE, clock=clock)
