"""The SQLite schema as an ordered list of migrations, and the code that applies them.

A state file outlives the binary that wrote it: a newer watcher must open an older file and
bring it up to date, and an older watcher must refuse a file it does not understand rather
than corrupt it. Each migration runs in its own transaction together with the version bump,
so a crash mid-upgrade leaves the file at the previous version, never half-migrated.

Migrations are append-only: never edit a released one, add the next version instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from watcher.core.errors import WatcherError


class SchemaTooNewError(WatcherError):
    """The state file was written by a newer watcher whose schema this one does not know."""


@dataclass(frozen=True, slots=True)
class Migration:
    """Bring the schema from ``version - 1`` to ``version``."""

    version: int
    statements: tuple[str, ...]


_V1 = (
    # Watch state of each workflow (the engine's JSON form), replaced on every poll.
    """
    CREATE TABLE states (
        workflow_key TEXT PRIMARY KEY,
        state        TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    )
    """,
    # seq is the public feed cursor. AUTOINCREMENT (not plain rowid) so a seq is never
    # reused after old events are pruned, which keeps SSE Last-Event-ID resumption honest.
    """
    CREATE TABLE events (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        dedup_key    TEXT NOT NULL UNIQUE,
        event_id     TEXT NOT NULL,
        kind         TEXT NOT NULL,
        severity     TEXT NOT NULL,
        workflow_key TEXT NOT NULL,
        observed_at  TEXT NOT NULL,
        data         TEXT NOT NULL
    )
    """,
    "CREATE INDEX events_workflow ON events (workflow_key, seq)",
    # The outbox. One row per (message, notification URL); event_keys is the JSON list of
    # dedup keys in the order the message lists them.
    """
    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        url_key         TEXT NOT NULL,
        workflow_key    TEXT NOT NULL,
        event_keys      TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL,
        next_attempt_at TEXT NOT NULL,
        last_error      TEXT,
        sent_at         TEXT
    )
    """,
    # The head of each URL's queue: MIN(id) per url_key among pending rows.
    "CREATE INDEX deliveries_pending ON deliveries (url_key, id) WHERE state = 'pending'",
    "CREATE INDEX deliveries_state ON deliveries (state, created_at)",
    # Which events each delivery carries, for lookups by event and for referential
    # integrity (a delivery can only name stored events). Order lives in event_keys.
    """
    CREATE TABLE delivery_events (
        delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        dedup_key   TEXT NOT NULL REFERENCES events (dedup_key),
        PRIMARY KEY (delivery_id, dedup_key)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX delivery_events_key ON delivery_events (dedup_key)",
    """
    CREATE TABLE silences (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        matcher    TEXT NOT NULL,
        until      TEXT NOT NULL,
        reason     TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    )
    """,
    # Small JSON documents such as target health, keyed by name.
    """
    CREATE TABLE kv (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
)

_V2 = (
    # Silences added at run time (CLI, API): when they start and who added them. ``reason``
    # is the comment. Expiring one sets ``until`` to now, so the history stays listed.
    "ALTER TABLE silences ADD COLUMN starts_at TEXT",
    "ALTER TABLE silences ADD COLUMN creator TEXT NOT NULL DEFAULT ''",
    # At most one acknowledgement per workflow: a new one replaces the previous.
    # ``ended_at`` is set when the workflow changed after it (it then no longer applies).
    """
    CREATE TABLE acks (
        workflow_key TEXT PRIMARY KEY,
        by           TEXT NOT NULL,
        note         TEXT NOT NULL DEFAULT '',
        created_at   TEXT NOT NULL,
        until        TEXT NOT NULL,
        ended_at     TEXT
    )
    """,
)

_V3 = (
    # Attempts of a delivery whose outcome is unknown: the request was sent and no answer
    # came within the send timeout, so the service may have the message ("maybe
    # delivered"). Shown by `events`, so a duplicate at the receiver can be explained.
    "ALTER TABLE deliveries ADD COLUMN maybe_delivered INTEGER NOT NULL DEFAULT 0",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, _V1),
    Migration(2, _V2),
    Migration(3, _V3),
)

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in the file; 0 for a new, empty file."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply every migration newer than the file's version, in order; return the new version.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each step opens its own
    ``BEGIN IMMEDIATE`` so the version check and the upgrade cannot race another process.
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ... in order")
    latest = versions[-1] if versions else 0
    version = 0
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(conn)
            if version > latest:
                raise SchemaTooNewError(
                    f"state file has schema version {version}, this watcher knows up to "
                    f"{latest}; upgrade the watcher or use another state directory"
                )
            if version < migration.version:
                if version == 0:
                    if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                        # Tables but no schema_version: another program's database. Never
                        # add ours to it (StoreError reports it as not a watcher file).
                        raise sqlite3.DatabaseError(
                            "file is not a database of this watcher (it has other tables)"
                        )
                    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                    conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = ?", (migration.version,))
                version = migration.version
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    if not migrations:
        version = current_version(conn)
    if version > latest:
        raise SchemaTooNewError(
            f"state file has schema version {version}, this watcher knows up to {latest}"
        )
    return version
