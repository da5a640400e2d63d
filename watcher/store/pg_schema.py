"""The PostgreSQL schema as an ordered list of migrations, and the code that applies them.

The same rules as ``watcher.store.schema`` (SQLite): migrations are append-only, each runs in
its own transaction together with the version bump, and a watcher refuses a database whose
schema is newer than it knows. Several replicas may start at once against one database, so
every step first takes a transaction-scoped advisory lock: exactly one of them migrates, the
others then see the new version and do nothing.

The tables mirror the SQLite ones with native types (``timestamptz``, ``text[]``). JSON
documents are ``json``, not ``jsonb``: ``json`` keeps the exact text like SQLite does, and
``jsonb`` rejects the escape ``\u0000``, which a cloud error message may well contain; a
poll that can never commit would stall its workflow.

The HA work (replicas splitting the targets) uses delivery claims (``claimed_by``,
``claim_until``), the per-target lease table (``holder``, ``lease_until``, ``epoch``) and,
from version 4, the ``replicas`` heartbeat table.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from watcher.store.schema import Migration, SchemaTooNewError

# pg_advisory_xact_lock keys (bigint); arbitrary but fixed, and distinct from each other.
MIGRATION_LOCK = 0x0CCE_5C4E_0001
# Taken by every transaction that inserts events or deliveries, so ``seq`` and delivery ids
# are handed out in commit order: a feed reader that resumes after seq N can never miss an
# event that committed later with a smaller seq (an identity column alone does not promise it).
APPEND_LOCK = 0x0CCE_5C4E_0002

_V1 = (
    """
    CREATE TABLE states (
        workflow_key text PRIMARY KEY,
        state        json NOT NULL,
        updated_at   timestamptz NOT NULL
    )
    """,
    # seq is the public feed cursor; identity values are never reused after pruning.
    """
    CREATE TABLE events (
        seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        dedup_key    text NOT NULL UNIQUE,
        event_id     text NOT NULL,
        kind         text NOT NULL,
        severity     text NOT NULL,
        workflow_key text NOT NULL,
        observed_at  timestamptz NOT NULL,
        data         json NOT NULL
    )
    """,
    "CREATE INDEX events_workflow ON events (workflow_key, seq)",
    "CREATE INDEX events_observed ON events (observed_at)",
    # The outbox: one row per (message, notification URL). event_keys keeps the message order.
    # claimed_by/claim_until: a replica's claim on a delivery while it sends it (HA work).
    """
    CREATE TABLE deliveries (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        url_key         text NOT NULL,
        workflow_key    text NOT NULL,
        event_keys      text[] NOT NULL,
        state           text NOT NULL CHECK (state IN ('pending', 'sent', 'dead')),
        attempts        integer NOT NULL DEFAULT 0,
        created_at      timestamptz NOT NULL,
        next_attempt_at timestamptz NOT NULL,
        last_error      text,
        sent_at         timestamptz,
        claimed_by      text,
        claim_until     timestamptz
    )
    """,
    "CREATE INDEX deliveries_pending ON deliveries (url_key, id) WHERE state = 'pending'",
    "CREATE INDEX deliveries_state ON deliveries (state, created_at)",
    """
    CREATE TABLE delivery_events (
        delivery_id bigint NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        dedup_key   text NOT NULL REFERENCES events (dedup_key),
        PRIMARY KEY (delivery_id, dedup_key)
    )
    """,
    "CREATE INDEX delivery_events_key ON delivery_events (dedup_key)",
    """
    CREATE TABLE silences (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        matcher    json NOT NULL,
        until      timestamptz NOT NULL,
        reason     text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE kv (
        key        text PRIMARY KEY,
        value      json NOT NULL,
        updated_at timestamptz NOT NULL
    )
    """,
    # One row per target while replicas split the work (HA work): who polls it, until when,
    # and the epoch every commit of that holder is fenced with.
    """
    CREATE TABLE target_leases (
        target      text PRIMARY KEY,
        holder      text NOT NULL,
        lease_until timestamptz NOT NULL,
        epoch       bigint NOT NULL DEFAULT 1
    )
    """,
)

_V2 = (
    # Silences added at run time (CLI, API), as in SQLite's version 2: when they start and
    # who added them; ``reason`` is the comment; expiring one sets ``until`` to now.
    "ALTER TABLE silences ADD COLUMN starts_at timestamptz",
    "ALTER TABLE silences ADD COLUMN creator text NOT NULL DEFAULT ''",
    # At most one acknowledgement per workflow; ``ended_at`` is set when the workflow
    # changed after it.
    """
    CREATE TABLE acks (
        workflow_key text PRIMARY KEY,
        by           text NOT NULL,
        note         text NOT NULL DEFAULT '',
        created_at   timestamptz NOT NULL,
        until        timestamptz NOT NULL,
        ended_at     timestamptz
    )
    """,
)

_V3 = (
    # Attempts whose outcome is unknown (sent, no answer within the send timeout), as in
    # SQLite's version 3.
    "ALTER TABLE deliveries ADD COLUMN maybe_delivered integer NOT NULL DEFAULT 0",
)

_V4 = (
    # Replicas sharing the work (HA): each one's heartbeat, so a replica can compute its fair
    # share of the targets (ceil(targets / live replicas)). Expiry is by the database clock.
    """
    CREATE TABLE replicas (
        replica_id text PRIMARY KEY,
        seen_until timestamptz NOT NULL,
        started_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX target_leases_holder ON target_leases (holder)",
    "CREATE INDEX deliveries_claimed ON deliveries (claimed_by) WHERE state = 'pending'",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, _V1),
    Migration(2, _V2),
    Migration(3, _V3),
    Migration(4, _V4),
)

LATEST_VERSION = MIGRATIONS[-1].version


async def current_version(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
    """The schema version in the connection's first search_path schema; 0 when new."""
    cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute("SELECT version FROM schema_version")
    row = await cur.fetchone()
    return int(str(row[0])) if row else 0


async def apply_migrations(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
    migrations: Sequence[Migration] = MIGRATIONS,
) -> int:
    """Apply every migration newer than the database's version, in order; return it.

    ``conn`` must be in autocommit mode: each step is its own transaction.
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ... in order")
    latest = versions[-1] if versions else 0
    for migration in migrations:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            version = await current_version(conn)
            _refuse_newer(version, latest)
            if version < migration.version:
                if version == 0:
                    await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
                    await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                for statement in migration.statements:
                    await conn.execute(statement.encode())
                await conn.execute("UPDATE schema_version SET version = %s", (migration.version,))
    version = await current_version(conn)
    _refuse_newer(version, latest)
    return version


def _refuse_newer(version: int, latest: int) -> None:
    if version > latest:
        raise SchemaTooNewError(
            f"database has schema version {version}, this watcher knows up to {latest}; "
            "upgrade the watcher or use another database"
        )
