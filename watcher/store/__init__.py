"""Durable state behind ``watcher.core.ports.Store``: SQLite (the zero-setup default) or a
shared PostgreSQL database, chosen by ``[state] backend``.

Kept apart from the core so the core stays free of I/O. ``open_store`` is the one place that
turns the settings into a store, so the daemon does not know which backend it runs on.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcher.config import Settings
    from watcher.core.ports import Clock, Store

STORE_FILE = "watcher.sqlite3"


def default_replica_id() -> str:
    """hostname-pid-random: unique per process start, readable in the lease table (a
    restarted replica is a new holder; its predecessor's leases and claims just expire)."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


async def open_store(settings: Settings, clock: Clock) -> Store:
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


async def check_store(settings: Settings, clock: Clock) -> list[str]:
    """Problems reaching the configured store, one line each; empty when it answers.

    For ``config validate --online``: a PostgreSQL store is opened (which also migrates it),
    pinged and closed. The SQLite file is not touched (opening would create it). The lines
    quote psycopg's reason (host, port, user), never the DSN itself.
    """
    if settings.state.backend != "postgres":
        return []
    import psycopg  # noqa: PLC0415

    from watcher.core.errors import WatcherError  # noqa: PLC0415

    try:
        store = await open_store(settings, clock)
    except (psycopg.Error, WatcherError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return [f"state.dsn: cannot open the PostgreSQL store: {reason}"]
    try:
        if not await store.ping():
            return ["state.dsn: the PostgreSQL store does not answer a query"]
    finally:
        await store.close()
    return []
