"""The durable state in a shared PostgreSQL database (issue 11), behind ``Store``.

Same contract as ``watcher.store.sqlite.SqliteStore`` (the contract tests run against both):
snapshot, new events and their planned deliveries commit in one transaction; events are
inserted with ``ON CONFLICT (dedup_key) DO NOTHING``; a URL's deliveries go out in creation
order; ``seq`` is the feed cursor.

Unlike SQLite, methods really await the network, so they interleave on the event loop and
run on several pooled connections at once. Two consequences are handled here:

- every transaction that appends events or deliveries takes one advisory lock first
  (``pg_schema.APPEND_LOCK``), so ``seq`` and delivery ids are assigned in commit order and
  a feed reader resuming after ``seq`` N never misses a later commit with a smaller seq;
- the pool checks a connection before lending it (``check_connection``), so a restarted
  server costs one failed call per broken connection, not a poisoned pool.

Connections run in autocommit; every multi-statement write is an explicit transaction.
Sessions use ``TimeZone=UTC`` and every datetime returned is aware UTC, as with SQLite.

Replicas (issue 11.2) share one database: the lease methods (``LeaseStore``) split the
targets, a fenced ``commit_poll`` checks its lease row in the same transaction, deliveries
are claimed per URL head, and every commit NOTIFYs ``watcher_commits`` with its key, which
``listen`` relays from a dedicated connection. The lease methods have a dedicated
connection of their own too, so a renewal never waits behind polls for a pooled one. Every
lease and claim expiry is judged by the database's ``now()``, never by a replica's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from watcher.core.acks import Acknowledgement
from watcher.core.errors import LeaseLostError, WatcherError
from watcher.core.events import Event
from watcher.core.health import TargetHealth
from watcher.core.ports import (
    Clock,
    Delivery,
    EventWithDeliveries,
    Fence,
    OutboxStats,
    PlannedDelivery,
    StoredEvent,
    SystemClock,
    UrlKeys,
)
from watcher.core.silences import Silence
from watcher.core.state import WatchState
from watcher.store import codec, default_replica_id, pg_schema

Conn = psycopg.AsyncConnection[tuple[Any, ...]]

CONNECT_TIMEOUT_S = 10
# How long a call waits for a pooled connection before it fails (the poll or delivery then
# fails and is retried by its own schedule), and how long the pool keeps retrying one broken
# connection with exponential backoff before it gives up and starts afresh at the next
# request. psycopg-pool's default (5 min) lets the backoff grow to minutes, so after a
# database restart the store would stay down far longer than the database.
POOL_TIMEOUT_S = 10.0
RECONNECT_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 5.0
# The channel every commit notifies with its workflow key (LISTEN/NOTIFY, see ``listen``).
COMMITS_CHANNEL = "watcher_commits"
# A delivery claim lasts this long unless ``claim_as`` says otherwise (the lease time): a
# live replica renews its claims (``renew_claims``), a dead one's return to the queue.
DEFAULT_CLAIM_S = 30.0
LISTEN_RETRY_S = (0.5, 10.0)  # reconnect backoff of the listener: first, cap
RELEASE_TIMEOUT_S = 2.0  # giving claims back at close must not hold a shutdown up
# The head (lowest pending id) of each URL's queue: walking deliveries_pending (url_key, id)
# from one URL's first row to the next URL's first row, one index seek per URL (a "loose
# index scan": PostgreSQL has no skip scan). With ``GROUP BY url_key`` every pending row is
# read, and the dispatcher claims heads after every send, so a 10,000-message backlog cost
# O(backlog²) (issue 12 item 7). ``= ANY(ARRAY(...))`` pins the lookups by id to the primary
# key: a join let the planner choose a scan of the whole table.
_PENDING_HEADS = (
    "heads AS ("
    " (SELECT url_key, id FROM deliveries WHERE state = 'pending' ORDER BY url_key, id LIMIT 1)"
    " UNION ALL"
    " SELECT n.url_key, n.id FROM heads h CROSS JOIN LATERAL"
    "  (SELECT url_key, id FROM deliveries WHERE state = 'pending' AND url_key > h.url_key"
    "   ORDER BY url_key, id LIMIT 1) n)"
)
# ``due_deliveries``' claim (see there); parameters now, me, limit, claim (seconds).
CLAIM_HEADS_SQL = (
    f"WITH RECURSIVE {_PENDING_HEADS}, "  # noqa: S608 - constant SQL
    "cand AS (SELECT d.id FROM deliveries d WHERE d.id = ANY(ARRAY(SELECT id FROM heads)) "
    "           AND d.state = 'pending' AND d.next_attempt_at <= %(now)s "
    "           AND (d.claimed_by IS NULL OR d.claimed_by = %(me)s "
    "                OR d.claim_until < now()) "
    "         ORDER BY d.id LIMIT %(limit)s FOR UPDATE OF d SKIP LOCKED) "
    "UPDATE deliveries d SET claimed_by = %(me)s, "
    "  claim_until = now() + make_interval(secs => %(claim)s) "
    "WHERE d.id = ANY(ARRAY(SELECT id FROM cand)) RETURNING d.id"
)

log = structlog.get_logger(__name__)


class StoreConfigError(WatcherError):
    """The configured DSN cannot be used (the message never quotes it)."""


def _ts(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use aware UTC datetimes")
    return value.astimezone(UTC)


def _dt(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _opt_dt(value: datetime | None) -> datetime | None:
    return None if value is None else _dt(value)


def _text(value: str) -> str:
    """Free text (error messages, reasons) with NUL, which PostgreSQL text cannot hold,
    shown as U+FFFD: a sender's error quoting a binary body must not fail the bookkeeping."""
    return value.replace("\x00", "\ufffd")


# The SQLite store's serialisation, so both reject the same values (NaN, non-JSON types).
_dumps = codec.dumps


def _session_kwargs(dsn: str) -> dict[str, Any]:
    """Connection settings; the DSN's own ``options`` (e.g. a search_path) are kept."""
    given = conninfo_to_dict(dsn)
    options = " ".join(str(o) for o in (given.get("options"), "-c TimeZone=UTC") if o)
    return {
        "autocommit": True,
        "connect_timeout": given.get("connect_timeout") or CONNECT_TIMEOUT_S,
        # Timestamps come back in UTC; application_name shows who holds a connection.
        "options": options,
        "application_name": given.get("application_name") or "cce-upgrade-watcher",
    }


class PostgresStore:
    """PostgreSQL-backed ``Store``; create it with ``await PostgresStore.open(dsn)``."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        clock: Clock,
        *,
        dsn: str | None = None,
        session: dict[str, Any] | None = None,
    ) -> None:
        """Use ``open``; this only wires an opened pool (``dsn``: for ``listen``)."""
        self._pool = pool
        self._clock = clock
        self._dsn = dsn
        self._session = session or {}
        self._closed = False
        self._failure: str | None = None  # the latest failed commit since self_check()
        self.replica_id = default_replica_id()  # who claims deliveries (``claim_as``)
        self._claim_s = DEFAULT_CLAIM_S
        # The lease keeper's own connection (see ``_lease_connection``), opened lazily.
        self._lease_conn: Conn | None = None
        self._lease_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, dsn: str, *, clock: Clock | None = None, pool_size: int = 4
    ) -> PostgresStore:
        """Connect, migrate the schema and open the pool.

        The migration runs on one direct connection first, so a wrong DSN or an unreachable
        server fails here with psycopg's own reason (it names host and port, never the
        password) rather than as a pool timeout.
        """
        try:
            kwargs = _session_kwargs(dsn)
        except psycopg.ProgrammingError:
            # psycopg's parse error quotes the DSN, which may hold a password.
            raise StoreConfigError("state.dsn is not a valid PostgreSQL DSN") from None
        conn = await psycopg.AsyncConnection.connect(dsn, **kwargs)
        try:
            await pg_schema.apply_migrations(conn)
        finally:
            await conn.close()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs=kwargs,
            check=AsyncConnectionPool.check_connection,
            timeout=POOL_TIMEOUT_S,
            reconnect_timeout=RECONNECT_TIMEOUT_S,
            open=False,  # an implicitly opened async pool is deprecated (LIBRARIES pitfalls)
            name="watcher-store",
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except BaseException:
            await pool.close()  # stop its background reconnect workers
            raise
        return cls(pool, clock or SystemClock(), dsn=dsn, session=kwargs)

    # -- states -------------------------------------------------------------------------

    async def load_state(self, workflow_key: str) -> WatchState | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT state FROM states WHERE workflow_key = %s", (workflow_key,)
            )
            row = await cur.fetchone()
        return None if row is None else codec.decode_state(row[0])

    async def load_all_states(self) -> dict[str, WatchState]:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT workflow_key, state FROM states")
            rows = await cur.fetchall()
        return {key: codec.decode_state(state) for key, state in rows}

    async def workflow_keys(self) -> list[str]:
        """The keys of every workflow with a stored state (to resolve ``ack WORKFLOW``)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT workflow_key FROM states ORDER BY workflow_key")
            rows = await cur.fetchall()
        return [r[0] for r in rows]

    # -- the poll commit ----------------------------------------------------------------

    async def commit_poll(
        self,
        workflow_key: str,
        state: WatchState | None,
        events: Sequence[Event],
        deliveries: Sequence[PlannedDelivery],
        *,
        fence: Fence | None = None,
    ) -> list[Event]:
        """Write state, new events and their deliveries in ONE transaction; return new events.

        Same rules as ``SqliteStore.commit_poll``: a known dedup key (or one repeated in
        ``events``) is skipped and dropped from every delivery; an empty delivery is not
        created. Serialisation happens before the transaction opens.

        With a ``fence`` the lease row is checked (and share-locked, so a takeover waits
        for this commit) first: a lost or expired lease raises ``LeaseLostError`` and
        nothing is written. The commit NOTIFYs ``watcher_commits`` with ``workflow_key``.
        """
        now = _ts(self._clock.now())
        state_json = await codec.encode_state(state)
        rows = [
            (
                e.dedup_key,
                e.id,
                e.kind,
                str(e.severity),
                workflow_key,
                _ts(e.observed_at),
                _dumps(e.to_dict()),
            )
            for e in events
        ]
        try:
            return await self._commit(
                workflow_key, state_json, events, rows, deliveries, now, fence
            )
        except (psycopg.Error, PoolTimeout) as exc:
            self._failure = _trouble(exc)
            raise

    async def _commit(
        self,
        workflow_key: str,
        state_json: str | None,
        events: Sequence[Event],
        rows: list[tuple[Any, ...]],
        deliveries: Sequence[PlannedDelivery],
        now: datetime,
        fence: Fence | None,
    ) -> list[Event]:
        new: list[Event] = []
        async with self._pool.connection() as conn, conn.transaction():
            if fence is not None:
                await _check_fence(conn, fence)
            if rows:
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (pg_schema.APPEND_LOCK,))
            if state_json is not None:
                await conn.execute(
                    "INSERT INTO states (workflow_key, state, updated_at) "
                    "VALUES (%s, %s::json, %s) ON CONFLICT (workflow_key) DO UPDATE "
                    "SET state = excluded.state, updated_at = excluded.updated_at",
                    (workflow_key, state_json, now),
                )
            for event, row in zip(events, rows, strict=True):
                cur = await conn.execute(
                    "INSERT INTO events (dedup_key, event_id, kind, severity, workflow_key, "
                    "observed_at, data) VALUES (%s, %s, %s, %s, %s, %s, %s::json) "
                    "ON CONFLICT (dedup_key) DO NOTHING",
                    row,
                )
                if cur.rowcount == 1:
                    new.append(event)
            new_keys = {e.dedup_key for e in new}
            for planned in deliveries:
                keys = list(dict.fromkeys(k for k in planned.event_keys if k in new_keys))
                if not keys:
                    continue
                cur = await conn.execute(
                    "INSERT INTO deliveries (url_key, workflow_key, event_keys, state, "
                    "attempts, created_at, next_attempt_at) "
                    "VALUES (%s, %s, %s, 'pending', 0, %s, %s) RETURNING id",
                    (planned.url_key, workflow_key, keys, now, now),
                )
                created = await cur.fetchone()
                if created is None:  # pragma: no cover - RETURNING always yields the row
                    raise RuntimeError("INSERT ... RETURNING id returned no row")
                async with conn.cursor() as many:
                    await many.executemany(
                        "INSERT INTO delivery_events (delivery_id, dedup_key) VALUES (%s, %s)",
                        [(created[0], k) for k in keys],
                    )
            if state_json is not None or new:
                # Delivered at commit (never for a rolled-back one): other replicas wake
                # their dispatcher and feed, and refresh this workflow's view.
                await conn.execute("SELECT pg_notify(%s, %s)", (COMMITS_CHANNEL, workflow_key))
        return new

    # -- the outbox ---------------------------------------------------------------------

    _DELIVERY_COLUMNS = (
        "d.id, d.url_key, d.workflow_key, d.event_keys, d.state, d.attempts, d.created_at, "
        "d.next_attempt_at, d.last_error, d.sent_at, d.maybe_delivered"
    )

    async def _deliveries(self, conn: Conn, rows: list[tuple[Any, ...]]) -> list[Delivery]:
        """Build Delivery values, loading their events with one query."""
        wanted = sorted({k for r in rows for k in r[3]})
        events: dict[str, Event] = {}
        if wanted:
            cur = await conn.execute(
                "SELECT dedup_key, data FROM events WHERE dedup_key = ANY(%s)", (wanted,)
            )
            for key, data in await cur.fetchall():
                events[key] = Event.from_dict(data)
        return [
            Delivery(
                id=r[0],
                url_key=r[1],
                workflow_key=r[2],
                events=tuple(events[k] for k in r[3] if k in events),
                state=r[4],
                attempts=r[5],
                created_at=_dt(r[6]),
                next_attempt_at=_dt(r[7]),
                last_error=r[8],
                sent_at=_opt_dt(r[9]),
                maybe_delivered=r[10],
            )
            for r in rows
        ]

    async def due_deliveries(self, now: datetime, limit: int = 100) -> list[Delivery]:
        """Claim and return the head (oldest pending delivery) of each URL's queue if it is
        due and not under another replica's live claim, oldest first.

        Only a queue's HEAD is ever claimable, and only while nobody else's claim on it is
        live, so a URL has one delivery in flight across all replicas and they go out in
        creation order. ``FOR UPDATE SKIP LOCKED`` lets concurrent claimers pass each
        other; the claim conditions sit on the locked row itself, so PostgreSQL re-checks
        them against a claim committed meanwhile. A claim this replica already holds is
        returned again (the dispatcher knows it is in flight). The claim is committed
        before the caller sends: nothing is sent inside a transaction.
        """
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                CLAIM_HEADS_SQL,
                {"now": _ts(now), "me": self.replica_id, "limit": limit, "claim": self._claim_s},
            )
            ids = sorted(r[0] for r in await cur.fetchall())
            if not ids:
                return []
            cur = await conn.execute(
                f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d "  # noqa: S608 - constant columns
                "WHERE d.id = ANY(%s) ORDER BY d.id",
                (ids,),
            )
            return await self._deliveries(conn, await cur.fetchall())

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE deliveries SET state = 'sent', sent_at = %s, attempts = attempts + 1, "
                "claimed_by = NULL, claim_until = NULL WHERE id = %s AND state = 'pending'",
                (_ts(now), delivery_id),
            )

    async def mark_failed(
        self,
        delivery_id: int,
        now: datetime,
        error: str,
        next_attempt_at: datetime,
        *,
        maybe_delivered: bool = False,
    ) -> None:
        """Count a failed attempt; ``error`` must already be free of secrets.

        ``maybe_delivered``: the attempt's outcome is unknown (sent, no answer in time).
        """
        del now  # the attempt time is implied by next_attempt_at; kept for the Protocol
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = %s, "
                "next_attempt_at = %s, maybe_delivered = maybe_delivered + %s, "
                "claimed_by = NULL, claim_until = NULL WHERE id = %s AND state = 'pending' "
                # A replica whose claim lapsed must not reschedule another one's send.
                "AND (claimed_by IS NULL OR claimed_by = %s)",
                (
                    _text(error),
                    _ts(next_attempt_at),
                    int(maybe_delivered),
                    delivery_id,
                    self.replica_id,
                ),
            )

    async def mark_dead(
        self, delivery_id: int, now: datetime, error: str, *, maybe_delivered: bool = False
    ) -> None:
        """Dead-letter after a final failed attempt (it counts as an attempt)."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, "
                "last_error = %s, next_attempt_at = %s, "
                "maybe_delivered = maybe_delivered + %s, claimed_by = NULL, "
                "claim_until = NULL WHERE id = %s AND state = 'pending' "
                "AND (claimed_by IS NULL OR claimed_by = %s)",
                (_text(error), _ts(now), int(maybe_delivered), delivery_id, self.replica_id),
            )

    async def rekey_deliveries(
        self, moves: Mapping[str, str], url_keys: UrlKeys | None = None
    ) -> dict[str, int]:
        """Move pending deliveries to their URL's new key (see ``Store.rekey_deliveries``).

        One UPDATE with a CASE applies every move at once, so swaps and chains work.
        """
        moves = {old: new for old, new in moves.items() if old != new}
        if not moves:
            if url_keys is not None:
                await self.save_kv(codec.URL_KEYS_KEY, codec.url_keys_doc(url_keys))
            return {}
        olds = sorted(moves)
        case = " ".join("WHEN %s THEN %s" for _ in olds)
        async with self._pool.connection() as conn, conn.transaction():
            if url_keys is not None:
                await self._put_kv(conn, codec.URL_KEYS_KEY, codec.url_keys_doc(url_keys))
            cur = await conn.execute(
                "SELECT url_key, COUNT(*) FROM deliveries "
                "WHERE state = 'pending' AND url_key = ANY(%s) GROUP BY url_key",
                (olds,),
            )
            counts = {str(r[0]): int(r[1]) for r in await cur.fetchall()}
            await conn.execute(
                f"UPDATE deliveries SET url_key = CASE url_key {case} END "  # noqa: S608 - placeholders only
                "WHERE state = 'pending' AND url_key = ANY(%s)",
                [v for old in olds for v in (old, moves[old])] + [olds],
            )
        return counts

    async def deliveries_for(self, event_keys: Sequence[str]) -> list[Delivery]:
        """Every delivery carrying any of these events, in creation order."""
        keys = sorted(set(event_keys))
        if not keys:
            return []
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d "  # noqa: S608 - constant columns
                "WHERE d.id IN (SELECT delivery_id FROM delivery_events "
                "WHERE dedup_key = ANY(%s)) ORDER BY d.id",
                (keys,),
            )
            return await self._deliveries(conn, await cur.fetchall())

    async def list_deliveries(self, limit: int = 50, state: str | None = None) -> list[Delivery]:
        """The most recent deliveries, newest first, optionally only one state."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d "  # noqa: S608 - constant columns
                "WHERE %(state)s::text IS NULL OR d.state = %(state)s "
                "ORDER BY d.id DESC LIMIT %(limit)s",
                {"state": state, "limit": limit},
            )
            return await self._deliveries(conn, await cur.fetchall())

    async def outbox_stats(self, now: datetime) -> OutboxStats:
        """Pending and dead counts, and the oldest pending delivery's age (0 when none)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT COUNT(*) FILTER (WHERE state = 'pending'), "
                "COUNT(*) FILTER (WHERE state = 'dead'), "
                "MIN(created_at) FILTER (WHERE state = 'pending'), "
                "MIN(next_attempt_at) FILTER (WHERE state = 'pending' AND next_attempt_at > %s) "
                "FROM deliveries WHERE state IN ('pending', 'dead')",
                (_ts(now),),
            )
            row = await cur.fetchone()
        pending, dead, oldest, retry = row if row is not None else (0, 0, None, None)
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        return OutboxStats(
            pending=int(pending), dead=int(dead), oldest_pending_age_s=age, next_retry_at=retry
        )

    # -- the event feed -----------------------------------------------------------------

    async def recent_events(self, *, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]:
        """Events in ascending ``seq``: after a cursor (``after_seq > 0``) or the tail."""
        async with self._pool.connection() as conn:
            if after_seq > 0:
                cur = await conn.execute(
                    "SELECT seq, data FROM events WHERE seq > %s ORDER BY seq LIMIT %s",
                    (after_seq, limit),
                )
            else:
                cur = await conn.execute(
                    "SELECT seq, data FROM (SELECT seq, data FROM events "
                    "ORDER BY seq DESC LIMIT %s) tail ORDER BY seq",
                    (limit,),
                )
            rows = await cur.fetchall()
        return [StoredEvent(seq=s, event=Event.from_dict(d)) for s, d in rows]

    async def events_with_deliveries(self, limit: int = 50) -> list[EventWithDeliveries]:
        """The latest ``limit`` events, oldest first, each with its deliveries' states."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT seq, dedup_key, workflow_key, data FROM "
                "(SELECT * FROM events ORDER BY seq DESC LIMIT %s) tail ORDER BY seq",
                (limit,),
            )
            rows = await cur.fetchall()
            keys = [r[1] for r in rows]
            by_key: dict[str, list[int]] = {k: [] for k in keys}
            cur = await conn.execute(
                "SELECT dedup_key, delivery_id FROM delivery_events "
                "WHERE dedup_key = ANY(%s) ORDER BY delivery_id",
                (keys,),
            )
            for key, delivery_id in await cur.fetchall():
                by_key[key].append(delivery_id)
            ids = sorted({i for v in by_key.values() for i in v})
            cur = await conn.execute(
                f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = ANY(%s)",  # noqa: S608 - constant columns
                (ids,),
            )
            deliveries = {d.id: d for d in await self._deliveries(conn, await cur.fetchall())}
        return [
            EventWithDeliveries(
                seq=seq,
                event=Event.from_dict(data),
                workflow_key=workflow_key,
                deliveries=tuple(deliveries[i] for i in by_key[key] if i in deliveries),
            )
            for seq, key, workflow_key, data in rows
        ]

    # -- silences -----------------------------------------------------------------------
    # The production model is watcher.core.silences.Silence; the store gives it its id.

    _SILENCE_COLUMNS = "id, matcher, until, reason, created_at, starts_at, creator"

    async def add_silence(self, silence: Silence) -> Silence:
        """Store a silence (its ``id`` and ``created_at`` are ignored); return it with both."""
        now = _ts(self._clock.now())
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO silences (matcher, until, reason, created_at, starts_at, creator) "
                "VALUES (%s::json, %s, %s, %s, %s, %s) RETURNING id",
                (
                    _dumps(silence.matcher()),
                    _ts(silence.until),
                    _text(silence.comment),
                    now,
                    None if silence.starts_at is None else _ts(silence.starts_at),
                    _text(silence.creator),
                ),
            )
            row = await cur.fetchone()
        if row is None:  # pragma: no cover - RETURNING always yields the row
            raise RuntimeError("INSERT ... RETURNING id returned no row")
        return replace(
            silence,
            id=str(row[0]),
            until=_ts(silence.until),
            starts_at=None if silence.starts_at is None else _ts(silence.starts_at),
            comment=_text(silence.comment),
            creator=_text(silence.creator),
            created_at=now,
        )

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """All silences by id, or only those not yet ended at ``active_at`` (including
        those that start later)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {self._SILENCE_COLUMNS} FROM silences "  # noqa: S608 - constant columns
                "WHERE %(at)s::timestamptz IS NULL OR until > %(at)s ORDER BY id",
                {"at": None if active_at is None else _ts(active_at)},
            )
            rows = await cur.fetchall()
        return [_silence(row) for row in rows]

    async def expire_silence(self, silence_id: int, now: datetime) -> Silence | None:
        """End a silence now (it stays listed, expired); None if there is no such id.
        Expiring an already ended one leaves its end as it was."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE silences SET until = %(now)s WHERE id = %(id)s AND until > %(now)s",
                {"now": _ts(now), "id": silence_id},
            )
            cur = await conn.execute(
                f"SELECT {self._SILENCE_COLUMNS} FROM silences WHERE id = %s",  # noqa: S608 - constant columns
                (silence_id,),
            )
            row = await cur.fetchone()
        return None if row is None else _silence(row)

    async def remove_silence(self, silence_id: int) -> bool:
        """Delete a silence; False if there was none with this id."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM silences WHERE id = %s", (silence_id,))
        return cur.rowcount == 1

    # -- acknowledgements ---------------------------------------------------------------

    async def set_ack(self, ack: Acknowledgement) -> None:
        """Acknowledge a workflow, replacing any earlier acknowledgement of it."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO acks (workflow_key, by, note, created_at, until, ended_at) "
                "VALUES (%s, %s, %s, %s, %s, NULL) ON CONFLICT (workflow_key) DO UPDATE SET "
                "by = excluded.by, note = excluded.note, created_at = excluded.created_at, "
                "until = excluded.until, ended_at = NULL",
                (
                    ack.workflow_key,
                    _text(ack.by),
                    _text(ack.note),
                    _ts(ack.created_at),
                    _ts(ack.until),
                ),
            )

    async def end_ack(self, workflow_key: str, now: datetime) -> bool:
        """Mark the workflow's acknowledgement ended; False if none was in force."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE acks SET ended_at = %(now)s WHERE workflow_key = %(key)s "
                "AND ended_at IS NULL AND until > %(now)s",
                {"now": _ts(now), "key": workflow_key},
            )
        return cur.rowcount == 1

    async def list_acks(self, *, active_at: datetime | None = None) -> list[Acknowledgement]:
        """Every acknowledgement, or only those in force at ``active_at``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT workflow_key, by, note, created_at, until, ended_at FROM acks "
                "WHERE %(at)s::timestamptz IS NULL OR (ended_at IS NULL AND until > %(at)s) "
                "ORDER BY workflow_key",
                {"at": None if active_at is None else _ts(active_at)},
            )
            rows = await cur.fetchall()
        return [
            Acknowledgement(
                workflow_key=k, by=b, note=n, created_at=_dt(c), until=_dt(u), ended_at=_opt_dt(e)
            )
            for k, b, n, c, u, e in rows
        ]

    # -- target health and discovery -----------------------------------------------------

    async def load_health(self, target: str) -> TargetHealth | None:
        data = await self.load_kv(codec.health_key(target))
        return None if data is None else codec.decode_health(data)

    async def save_health(self, target: str, value: TargetHealth) -> None:
        await self.save_kv(codec.health_key(target), codec.health_doc(value))

    async def load_known_workflows(self, discovery_key: str) -> frozenset[str] | None:
        data = await self.load_kv(discovery_key)
        return None if data is None else codec.decode_known(data)

    async def save_known_workflows(self, discovery_key: str, ids: Iterable[str]) -> None:
        await self.save_kv(discovery_key, codec.known_doc(ids))

    # The small JSON documents behind the typed methods above (not part of the port).

    async def load_kv(self, key: str) -> dict[str, Any] | None:
        """A small JSON document saved under ``key`` (target health, discovered ids)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT value FROM kv WHERE key = %s", (key,))
            row = await cur.fetchone()
        return None if row is None else dict(row[0])

    async def save_kv(self, key: str, value: Mapping[str, Any]) -> None:
        """Replace the document under ``key`` (JSON-serialisable, secret-free)."""
        async with self._pool.connection() as conn:
            await self._put_kv(conn, key, value)

    async def _put_kv(self, conn: Conn, key: str, value: Mapping[str, Any]) -> None:
        await conn.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (%s, %s::json, %s) "
            "ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, updated_at = excluded.updated_at",
            (key, _dumps(dict(value)), _ts(self._clock.now())),
        )

    async def load_url_keys(self) -> UrlKeys | None:
        data = await self.load_kv(codec.URL_KEYS_KEY)
        return None if data is None else codec.decode_url_keys(data)

    # -- leases and replicas (LeaseStore): every expiry by the database clock -------------

    @contextlib.asynccontextmanager
    async def _lease_connection(self) -> AsyncIterator[Conn]:
        """The lease keeper's dedicated connection, like LISTEN's: never queued behind polls.

        A replica busy polling keeps every pooled connection in use; a renewal waiting its
        turn there lapsed every lease at 1,000 targets (each retake then fired more polls).
        One keeper uses it (the lock orders its statements); a broken connection is
        dropped and the next call reconnects. Without a DSN (a store built around a given
        pool) the pool serves.
        """
        if self._dsn is None:
            async with self._pool.connection() as pooled:
                yield pooled
            return
        async with self._lease_lock:
            conn = self._lease_conn
            if conn is None or conn.closed or conn.broken:
                conn = await psycopg.AsyncConnection.connect(self._dsn, **self._session)
                self._lease_conn = conn
            try:
                yield conn
            except psycopg.OperationalError:
                self._lease_conn = None
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
                raise

    def claim_as(self, replica_id: str, claim_s: float) -> None:
        """Claim deliveries as ``replica_id`` for ``claim_s`` seconds (renewed while alive)."""
        self.replica_id = replica_id
        self._claim_s = float(claim_s)

    async def heartbeat(self, replica_id: str, ttl_s: float) -> None:
        """Say this replica is alive for ``ttl_s`` more seconds; forget replicas long gone."""
        async with self._lease_connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO replicas (replica_id, seen_until, started_at) "
                "VALUES (%(me)s, now() + make_interval(secs => %(ttl)s), now()) "
                "ON CONFLICT (replica_id) DO UPDATE SET seen_until = excluded.seen_until",
                {"me": replica_id, "ttl": float(ttl_s)},
            )
            await conn.execute("DELETE FROM replicas WHERE seen_until < now() - interval '1 day'")

    async def leave(self, replica_id: str) -> None:
        """Forget this replica's heartbeat (a clean stop)."""
        async with self._lease_connection() as conn:
            await conn.execute("DELETE FROM replicas WHERE replica_id = %s", (replica_id,))

    async def live_replicas(self) -> int:
        async with self._lease_connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM replicas WHERE seen_until > now()")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def renew_leases(
        self, holder: str, keys: Sequence[str], lease_s: float
    ) -> dict[str, int]:
        """Extend ``holder``'s leases on ``keys`` in ONE statement; the ones still held.

        A lease that lapsed but that nobody took is renewed with its epoch: no other
        replica could have written under it meanwhile (a taker raises the epoch).
        """
        if not keys:
            return {}
        async with self._lease_connection() as conn:
            cur = await conn.execute(
                "UPDATE target_leases SET lease_until = now() + make_interval(secs => %s) "
                "WHERE holder = %s AND target = ANY(%s) RETURNING target, epoch",
                (float(lease_s), holder, list(keys)),
            )
            rows = await cur.fetchall()
        return {str(k): int(e) for k, e in rows}

    async def take_leases(
        self, holder: str, keys: Sequence[str], lease_s: float, limit: int
    ) -> dict[str, int]:
        """Take up to ``limit`` of ``keys`` that are free (no row) or expired, raising their
        epoch; the ones taken, with their new epoch.

        ``ON CONFLICT ... DO UPDATE ... WHERE`` re-checks the expiry on the row as it is
        when locked, so of two replicas racing for one lease exactly one gets it.
        """
        if not keys or limit <= 0:
            return {}
        async with self._lease_connection() as conn:
            cur = await conn.execute(
                "WITH cand AS (SELECT k FROM unnest(%(keys)s::text[]) AS k "
                "  LEFT JOIN target_leases l ON l.target = k "
                "  WHERE l.target IS NULL OR l.lease_until < now() "
                "  ORDER BY k LIMIT %(limit)s) "
                "INSERT INTO target_leases (target, holder, lease_until, epoch) "
                "SELECT k, %(me)s, now() + make_interval(secs => %(lease)s), 1 FROM cand "
                "ON CONFLICT (target) DO UPDATE SET holder = excluded.holder, "
                "  lease_until = excluded.lease_until, epoch = target_leases.epoch + 1 "
                "  WHERE target_leases.lease_until < now() "
                "RETURNING target, epoch",
                {"keys": list(keys), "limit": limit, "me": holder, "lease": float(lease_s)},
            )
            rows = await cur.fetchall()
        return {str(k): int(e) for k, e in rows}

    async def release_leases(self, holder: str, keys: Sequence[str]) -> None:
        """Give up ``holder``'s leases on ``keys``: expired at once, the epoch kept (so
        the next holder's is higher than any this one committed with)."""
        if not keys:
            return
        async with self._lease_connection() as conn:
            await conn.execute(
                "UPDATE target_leases SET lease_until = '-infinity' "
                "WHERE holder = %s AND target = ANY(%s)",
                (holder, list(keys)),
            )

    async def renew_claims(self, holder: str, claim_s: float) -> int:
        """Extend ``holder``'s claims on pending deliveries; how many."""
        async with self._lease_connection() as conn:
            cur = await conn.execute(
                "UPDATE deliveries SET claim_until = now() + make_interval(secs => %s) "
                "WHERE claimed_by = %s AND state = 'pending'",
                (float(claim_s), holder),
            )
        return int(cur.rowcount)

    async def lease_rows(self) -> dict[str, tuple[str, int, bool]]:
        """Every lease row: target -> (holder, epoch, live) (tests, operators)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT target, holder, epoch, lease_until > now() FROM target_leases"
            )
            rows = await cur.fetchall()
        return {str(t): (str(h), int(e), bool(live)) for t, h, e, live in rows}

    # -- LISTEN/NOTIFY --------------------------------------------------------------------

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Relay every ``watcher_commits`` notification's key to ``callback`` until cancelled.

        Runs on its own connection (a pooled one would be handed to other calls and lose
        the LISTEN), reconnecting with backoff after an outage. After each (re)connect it
        calls ``callback("")``: commits made while it was away were not notified to it.
        """
        if self._dsn is None:
            raise RuntimeError("this store was not opened with a DSN; cannot listen")
        delay = LISTEN_RETRY_S[0]
        reported = False
        while not self._closed:
            try:
                conn = await psycopg.AsyncConnection.connect(self._dsn, **self._session)
            except psycopg.Error as exc:
                if not reported:
                    log.warning("store.listen_failed", error=_trouble(exc))
                    reported = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTEN_RETRY_S[1])
                continue
            try:
                await conn.execute(f"LISTEN {COMMITS_CHANNEL}")
                if reported:
                    log.info("store.listen_resumed")
                reported, delay = False, LISTEN_RETRY_S[0]
                callback("")
                async for note in conn.notifies():
                    callback(note.payload)
            except psycopg.Error as exc:
                if not reported:
                    log.warning("store.listen_failed", error=_trouble(exc))
                    reported = True
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()

    # -- housekeeping -------------------------------------------------------------------

    async def prune(self, before: datetime, *, batch: int = 500) -> int:
        """Delete up to ``batch`` finished deliveries and unreferenced events older than
        ``before``; return how many rows went (see ``SqliteStore.prune``)."""
        cutoff = _ts(before)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries "
                "WHERE state IN ('sent', 'dead') AND created_at < %s LIMIT %s)",
                (cutoff, batch),
            )
            gone = cur.rowcount
            cur = await conn.execute(
                "DELETE FROM events WHERE seq IN (SELECT e.seq FROM events e "
                "WHERE e.observed_at < %s AND NOT EXISTS (SELECT 1 FROM delivery_events de "
                "WHERE de.dedup_key = e.dedup_key) ORDER BY e.seq LIMIT %s)",
                (cutoff, batch),
            )
            gone += cur.rowcount
        return int(gone)

    # -- lifecycle ----------------------------------------------------------------------

    async def ping(self) -> bool:
        """True if the database answers a trivial query within a few seconds."""
        if self._closed:
            return False
        try:
            async with self._pool.connection(timeout=PING_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")
        except (psycopg.Error, PoolTimeout):
            return False
        return True

    def identity_problem(self) -> str | None:
        """Always None: a database has no file that could be replaced under the store."""
        return None

    async def self_check(self) -> str | None:
        """One line saying why the store cannot commit now, or None when it can.

        Writes a tiny probe row, then reports a poll commit that failed since the previous
        call. The lines quote psycopg's reason (host, port), never the DSN.
        """
        if self._closed:
            return "the store is closed"
        problem: str | None = None
        try:
            async with self._pool.connection(timeout=PING_TIMEOUT_S) as conn:
                await conn.execute(
                    "INSERT INTO kv (key, value, updated_at) "
                    "VALUES ('watcher/probe', '{}'::json, %s) "
                    "ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at",
                    (_ts(self._clock.now()),),
                )
        except (psycopg.Error, PoolTimeout) as exc:
            problem = _trouble(exc)
        failure, self._failure = self._failure, None
        return problem or failure

    async def close(self) -> None:
        """Give this replica's delivery claims back, then close the pool (idempotent).

        Closing is the last step of a shutdown, after the outbox drained: whatever this
        replica still claims it will not send, so another replica may at once instead of
        after the claim expires. Best effort: a claim left behind still expires.
        """
        if not self._closed:
            self._closed = True
            with contextlib.suppress(psycopg.Error, TimeoutError):
                async with (
                    asyncio.timeout(RELEASE_TIMEOUT_S),
                    self._pool.connection(timeout=RELEASE_TIMEOUT_S) as conn,
                ):
                    await conn.execute(
                        "UPDATE deliveries SET claimed_by = NULL, claim_until = NULL "
                        "WHERE claimed_by = %s AND state = 'pending'",
                        (self.replica_id,),
                    )
            if self._lease_conn is not None:
                with contextlib.suppress(psycopg.Error):
                    await self._lease_conn.close()
                self._lease_conn = None
            await self._pool.close()


async def _check_fence(conn: Conn, fence: Fence) -> None:
    """Raise ``LeaseLostError`` unless ``fence`` still names the live lease; share-lock the
    row so a takeover (which updates it) waits until this transaction ends."""
    cur = await conn.execute(
        "SELECT 1 FROM target_leases WHERE target = %s AND holder = %s AND epoch = %s "
        "AND lease_until > now() FOR SHARE",
        (fence.lease_key, fence.holder, fence.epoch),
    )
    if await cur.fetchone() is None:
        raise LeaseLostError(fence.lease_key, fence.holder, fence.epoch)


def _trouble(exc: BaseException) -> str:
    """One line about a failed database call (psycopg's reason never quotes the DSN)."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return f"PostgreSQL store: {reason}; check that the database is up and reachable"


def _silence(row: Sequence[Any]) -> Silence:
    silence_id, matcher, until, reason, created_at, starts_at, creator = row
    m = dict(matcher)
    return Silence(
        until=_dt(until),
        target=m.get("target"),
        cluster_id=m.get("cluster_id"),
        workflow_id=m.get("workflow_id"),
        kinds=tuple(m.get("kinds") or ("*",)),
        labels={str(k): str(v) for k, v in (m.get("labels") or {}).items()},
        starts_at=_opt_dt(starts_at),
        id=str(silence_id),
        creator=creator,
        comment=reason,
        created_at=_dt(created_at),
    )
