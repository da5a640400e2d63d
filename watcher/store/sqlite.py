"""The durable state of one watcher process in a single SQLite file (SPEC.md sections 4, 9).

It implements ``watcher.core.ports.Store``: workflow snapshots, events with unique dedup keys
(their ``seq`` is the feed cursor), and the delivery outbox, plus silences, acknowledgements
and a small key-value table for target health.

Threading decision: the stdlib ``sqlite3`` module is used directly on the event loop thread.
Every method runs one short transaction (sub-millisecond under WAL with synchronous=NORMAL:
a commit appends to the WAL without an fsync) inside one synchronous step, so

- a thread hop per query would cost more than the query itself;
- methods never interleave: each async method runs to completion once awaited, so
  transactions from the poller and the dispatcher are serialised by the loop itself and
  a cancellation can never land inside one (``commit_poll`` awaits only the group
  commit, which runs as one synchronous callback: see ``_flush``);
- nothing on the hot path may block long: no VACUUM, no unbounded scans (queue heads and
  pruning use indexes and batches), and ``busy_timeout`` bounds the wait if another process
  (the ``events`` CLI, an operator's sqlite3 shell) holds the write lock.

The methods are ``async`` anyway so that a PostgreSQL store can implement the same Protocol.

Times are stored as ISO 8601 UTC text with microseconds (``2024-05-01T12:00:00.000000+00:00``),
which sorts lexically in time order, so SQL can compare them directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher.core.acks import Acknowledgement
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
from watcher.store import codec, schema
from watcher.store.trouble import describe


def _ts(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use aware UTC datetimes")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _opt_dt(text: str | None) -> datetime | None:
    return None if text is None else _dt(text)


_dumps = codec.dumps
# Polls per group-commit transaction: a wave of 10,000 changes holds the write lock for
# short transactions with loop turns between, never for one long one.
GROUP_COMMIT = 64

# The distinct URL keys with pending deliveries, one index seek each (a "loose index scan"
# on deliveries_pending): a queue-head read costs O(URLs), not O(pending rows). With
# ``GROUP BY url_key`` SQLite reads every pending row, and the dispatcher reads the heads
# after every send, so a 10,000-message backlog cost O(backlog²) (issue 12 item 7).
# INDEXED BY: the planner would pick deliveries_state (state = ?) and read every pending row.
_PENDING_URLS = (
    "urls(url_key) AS ("
    " SELECT MIN(url_key) FROM deliveries INDEXED BY deliveries_pending"
    " WHERE state = 'pending'"
    " UNION ALL"
    " SELECT (SELECT MIN(url_key) FROM deliveries INDEXED BY deliveries_pending"
    "         WHERE state = 'pending' AND url_key > urls.url_key)"
    " FROM urls WHERE urls.url_key IS NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class _PendingCommit:
    """One poll's serialised writes, queued for the next group commit."""

    workflow_key: str
    state_json: str | None
    events: tuple[Event, ...]
    rows: list[tuple[Any, ...]]
    deliveries: tuple[PlannedDelivery, ...]
    future: asyncio.Future[list[Event]]


class SqliteStore:
    """SQLite-backed ``Store``; create it with ``await SqliteStore.open(path)``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock) -> None:
        """Use ``open``; this only wires an already configured connection."""
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._clock = clock
        self._identity = _identity(path)
        self._failure: str | None = None  # the latest store failure since self_check()
        self._pending: list[_PendingCommit] = []  # polls waiting for the group commit

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        busy_timeout_ms: int = 2000,
    ) -> SqliteStore:
        """Open (creating the directory and file if needed) and migrate the state file.

        The file is created mode 0600: it holds cluster names and notification history.
        ``clock`` stamps created_at/updated_at columns; tests pass a fake one.
        """
        file = Path(path)
        try:
            file = _prepare_file(file)
            conn = sqlite3.connect(file, isolation_level=None, check_same_thread=True)
        except (OSError, sqlite3.Error) as exc:
            raise describe(file, exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"could not enable WAL (journal_mode={mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            # A damaged page (garbage written into the file) fails here, at start-up, with
            # a clear message, not later inside a poll. quick_check reads every page once:
            # well under a second for the store sizes the retention keeps.
            verdict = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed: {verdict}")
            schema.apply_migrations(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise describe(file, exc) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, file, clock or SystemClock())

    @property
    def path(self) -> Path:
        return self._path

    # -- transactions -------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the store is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError:
            raise  # a bug in a caller, not a sick store
        except sqlite3.DatabaseError as exc:  # full, unwritable, damaged
            self._failure = str(describe(self._path, exc))
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so multi-query reads see one consistent snapshot."""
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:  # a damaged page found by a read
            self._failure = str(describe(self._path, exc))
            raise

    # -- states -------------------------------------------------------------------------

    async def load_state(self, workflow_key: str) -> WatchState | None:
        row = (
            self._connection()
            .execute("SELECT state FROM states WHERE workflow_key = ?", (workflow_key,))
            .fetchone()
        )
        return None if row is None else codec.decode_state(row[0])

    async def load_all_states(self) -> dict[str, WatchState]:
        rows = self._connection().execute("SELECT workflow_key, state FROM states").fetchall()
        return {key: codec.decode_state(text) for key, text in rows}

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

        An event whose dedup key is already stored (or repeated earlier in ``events``) is
        skipped and removed from every planned delivery; a delivery left empty is not
        created. Everything is serialised before the transaction opens, so the write lock is
        held only for the inserts themselves.

        Group commit: the polls that commit in the same turn of the event loop share one
        transaction (up to ``GROUP_COMMIT``), so a wave of changes writes each WAL page
        once instead of once per poll (see ``_flush``). Each poll's writes stay atomic: the
        caller gets its result only when the shared transaction committed. A caller
        cancelled before the flush commits nothing.
        """
        del fence  # one process per file (it is locked): nothing to fence
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
        self._connection()  # a closed store fails here, in the caller, not in the flush
        loop = asyncio.get_running_loop()
        pending = _PendingCommit(
            workflow_key, state_json, tuple(events), rows, tuple(deliveries), loop.create_future()
        )
        self._pending.append(pending)
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await pending.future

    def _flush(self) -> None:
        """Commit the queued polls, GROUP_COMMIT per transaction (a loop turn between).

        If the shared transaction fails, each poll is retried alone, so one poll's problem
        (an integrity bug) fails that poll only; a sick store fails them all, as it should.
        """
        batch = [p for p in self._pending[:GROUP_COMMIT] if not p.future.done()]
        del self._pending[:GROUP_COMMIT]
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        if not batch:
            return
        now = _ts(self._clock.now())
        try:
            with self._write() as conn:
                results = [self._insert_poll(conn, p, now) for p in batch]
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for p in batch:
                try:
                    with self._write() as conn:
                        result = self._insert_poll(conn, p, now)
                except Exception as one:
                    p.future.set_exception(one)
                else:
                    p.future.set_result(result)
            return
        for p, result in zip(batch, results, strict=True):
            p.future.set_result(result)

    def _insert_poll(self, conn: sqlite3.Connection, p: _PendingCommit, now: str) -> list[Event]:
        """One poll's writes inside the open transaction; the events that were new."""
        if p.state_json is not None:
            conn.execute(
                "INSERT INTO states (workflow_key, state, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (workflow_key) DO UPDATE "
                "SET state = excluded.state, updated_at = excluded.updated_at",
                (p.workflow_key, p.state_json, now),
            )
        new: list[Event] = []
        for event, row in zip(p.events, p.rows, strict=True):
            # ON CONFLICT on the dedup key only: unlike INSERT OR IGNORE it does not
            # also hide NOT NULL or CHECK violations.
            cur = conn.execute(
                "INSERT INTO events (dedup_key, event_id, kind, severity, workflow_key, "
                "observed_at, data) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (dedup_key) DO NOTHING",
                row,
            )
            if cur.rowcount == 1:
                new.append(event)
        new_keys = {e.dedup_key for e in new}
        for planned in p.deliveries:
            keys = list(dict.fromkeys(k for k in planned.event_keys if k in new_keys))
            if not keys:
                continue
            cur = conn.execute(
                "INSERT INTO deliveries (url_key, workflow_key, event_keys, state, "
                "attempts, created_at, next_attempt_at) "
                "VALUES (?, ?, ?, 'pending', 0, ?, ?)",
                (planned.url_key, p.workflow_key, _dumps(keys), now, now),
            )
            conn.executemany(
                "INSERT INTO delivery_events (delivery_id, dedup_key) VALUES (?, ?)",
                [(cur.lastrowid, k) for k in keys],
            )
        return new

    # -- the outbox ---------------------------------------------------------------------

    _DELIVERY_COLUMNS = (
        "d.id, d.url_key, d.workflow_key, d.event_keys, d.state, d.attempts, d.created_at, "
        "d.next_attempt_at, d.last_error, d.sent_at, d.maybe_delivered"
    )

    def _deliveries(self, conn: sqlite3.Connection, rows: list[Any]) -> list[Delivery]:
        """Build Delivery values, loading their events with one query."""
        key_lists = [list(json.loads(r[3])) for r in rows]
        wanted = sorted({k for keys in key_lists for k in keys})
        events: dict[str, Event] = {}
        for chunk in _chunks(wanted, 500):
            marks = ",".join("?" * len(chunk))
            for key, data in conn.execute(
                f"SELECT dedup_key, data FROM events WHERE dedup_key IN ({marks})",  # noqa: S608 - placeholders only
                chunk,
            ):
                events[key] = Event.from_dict(json.loads(data))
        return [
            Delivery(
                id=r[0],
                url_key=r[1],
                workflow_key=r[2],
                events=tuple(events[k] for k in keys if k in events),
                state=r[4],
                attempts=r[5],
                created_at=_dt(r[6]),
                next_attempt_at=_dt(r[7]),
                last_error=r[8],
                sent_at=_opt_dt(r[9]),
                maybe_delivered=r[10],
            )
            for r, keys in zip(rows, key_lists, strict=True)
        ]

    async def due_deliveries(self, now: datetime, limit: int = 100) -> list[Delivery]:
        """The head (oldest pending delivery) of each URL's queue if it is due, oldest first.

        A URL whose head is not yet due yields nothing, even if later deliveries of the
        same URL would be: a URL's messages go out in creation order. Other URLs are
        unaffected, so one failing URL never delays the rest.
        """
        with self._read() as conn:
            rows = conn.execute(
                f"WITH RECURSIVE {_PENDING_URLS} "  # noqa: S608 - constant SQL
                f"SELECT {self._DELIVERY_COLUMNS} FROM urls "
                "JOIN deliveries d ON d.id = (SELECT MIN(id) FROM deliveries "
                "     INDEXED BY deliveries_pending "
                "     WHERE state = 'pending' AND url_key = urls.url_key) "
                "WHERE d.next_attempt_at <= ? ORDER BY d.id LIMIT ?",
                (_ts(now), limit),
            ).fetchall()
            return self._deliveries(conn, rows)

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE deliveries SET state = 'sent', sent_at = ?, attempts = attempts + 1 "
                "WHERE id = ? AND state = 'pending'",
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
        with self._write() as conn:
            conn.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = ?, maybe_delivered = maybe_delivered + ? "
                "WHERE id = ? AND state = 'pending'",
                (error, _ts(next_attempt_at), int(maybe_delivered), delivery_id),
            )

    async def mark_dead(
        self, delivery_id: int, now: datetime, error: str, *, maybe_delivered: bool = False
    ) -> None:
        """Dead-letter after a final failed attempt (it counts as an attempt)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, "
                "last_error = ?, next_attempt_at = ?, maybe_delivered = maybe_delivered + ? "
                "WHERE id = ? AND state = 'pending'",
                (error, _ts(now), int(maybe_delivered), delivery_id),
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
        marks = ",".join("?" * len(olds))
        case = " ".join("WHEN ? THEN ?" for _ in olds)
        with self._write() as conn:
            if url_keys is not None:
                self._put_kv(conn, codec.URL_KEYS_KEY, codec.url_keys_doc(url_keys))
            counts = {
                str(r[0]): int(r[1])
                for r in conn.execute(
                    "SELECT url_key, COUNT(*) FROM deliveries "  # noqa: S608 - placeholders only
                    f"WHERE state = 'pending' AND url_key IN ({marks}) GROUP BY url_key",
                    olds,
                )
            }
            conn.execute(
                f"UPDATE deliveries SET url_key = CASE url_key {case} END "  # noqa: S608 - placeholders only
                f"WHERE state = 'pending' AND url_key IN ({marks})",
                [v for old in olds for v in (old, moves[old])] + olds,
            )
        return counts

    async def deliveries_for(self, event_keys: Sequence[str]) -> list[Delivery]:
        """Every delivery carrying any of these events, in creation order."""
        keys = sorted(set(event_keys))
        with self._read() as conn:
            ids: set[int] = set()
            for chunk in _chunks(keys, 500):
                marks = ",".join("?" * len(chunk))
                ids.update(
                    r[0]
                    for r in conn.execute(
                        "SELECT delivery_id FROM delivery_events "  # noqa: S608 - placeholders only
                        f"WHERE dedup_key IN ({marks})",
                        chunk,
                    )
                )
            rows: list[Any] = []
            for id_chunk in _chunks(sorted(ids), 500):
                marks = ",".join("?" * len(id_chunk))
                rows.extend(
                    conn.execute(
                        f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d "  # noqa: S608 - placeholders only
                        f"WHERE d.id IN ({marks}) ORDER BY d.id",
                        id_chunk,
                    ).fetchall()
                )
            return self._deliveries(conn, rows)

    async def list_deliveries(self, limit: int = 50, state: str | None = None) -> list[Delivery]:
        """The most recent deliveries, newest first, optionally only one state."""
        where, args = ("WHERE d.state = ?", (state, limit)) if state else ("", (limit,))
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d {where} "  # noqa: S608 - constant fragments
                "ORDER BY d.id DESC LIMIT ?",
                args,
            ).fetchall()
            return self._deliveries(conn, rows)

    async def outbox_stats(self, now: datetime) -> OutboxStats:
        """Pending and dead counts, and the oldest pending delivery's age (0 when none)."""
        with self._read() as conn:
            pending, oldest, retry = conn.execute(
                "SELECT COUNT(*), MIN(created_at), MIN(CASE WHEN next_attempt_at > ? "
                "THEN next_attempt_at END) FROM deliveries WHERE state = 'pending'",
                (_ts(now),),
            ).fetchone()
            (dead,) = conn.execute(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'dead'"
            ).fetchone()
        age = 0.0 if oldest is None else max(0.0, (now - _dt(oldest)).total_seconds())
        return OutboxStats(
            pending=int(pending),
            dead=int(dead),
            oldest_pending_age_s=age,
            next_retry_at=None if retry is None else _dt(retry),
        )

    # -- the event feed -----------------------------------------------------------------

    async def recent_events(self, *, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]:
        """Events in ascending ``seq`` order.

        ``after_seq > 0`` is a cursor: the next ``limit`` events after it (resume a feed).
        ``after_seq == 0`` means no cursor: the latest ``limit`` events (a tail).
        """
        conn = self._connection()
        if after_seq > 0:
            rows = conn.execute(
                "SELECT seq, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT seq, data FROM (SELECT seq, data FROM events ORDER BY seq DESC LIMIT ?) "
                "ORDER BY seq",
                (limit,),
            ).fetchall()
        return [StoredEvent(seq=s, event=Event.from_dict(json.loads(d))) for s, d in rows]

    async def events_with_deliveries(self, limit: int = 50) -> list[EventWithDeliveries]:
        """The latest ``limit`` events, oldest first, each with its deliveries' states.

        Raises StoreError (path and fix) when the file is damaged.
        """
        try:
            return self._events_with_deliveries(limit)
        except sqlite3.DatabaseError as exc:
            raise describe(self._path, exc) from exc

    def _events_with_deliveries(self, limit: int) -> list[EventWithDeliveries]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT seq, dedup_key, workflow_key, data FROM "
                "(SELECT * FROM events ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                (limit,),
            ).fetchall()
            keys = [r[1] for r in rows]
            by_key: dict[str, list[int]] = {k: [] for k in keys}
            for chunk in _chunks(keys, 500):
                marks = ",".join("?" * len(chunk))
                for key, delivery_id in conn.execute(
                    "SELECT dedup_key, delivery_id FROM delivery_events "  # noqa: S608 - placeholders only
                    f"WHERE dedup_key IN ({marks}) ORDER BY delivery_id",
                    chunk,
                ):
                    by_key[key].append(delivery_id)
            ids = sorted({i for v in by_key.values() for i in v})
            drows: list[Any] = []
            for id_chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(id_chunk))
                drows.extend(
                    conn.execute(
                        f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries d "  # noqa: S608 - placeholders only
                        f"WHERE d.id IN ({marks})",
                        id_chunk,
                    ).fetchall()
                )
            deliveries = {d.id: d for d in self._deliveries(conn, drows)}
        return [
            EventWithDeliveries(
                seq=seq,
                event=Event.from_dict(json.loads(data)),
                workflow_key=workflow_key,
                deliveries=tuple(deliveries[i] for i in by_key[key] if i in deliveries),
            )
            for seq, key, workflow_key, data in rows
        ]

    # -- silences -----------------------------------------------------------------------
    # The production model is watcher.core.silences.Silence; the store gives it its id.

    async def add_silence(self, silence: Silence) -> Silence:
        """Store a silence (its ``id`` and ``created_at`` are ignored); return it with both."""
        now = self._clock.now()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO silences (matcher, until, reason, created_at, starts_at, creator) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    _dumps(silence.matcher()),
                    _ts(silence.until),
                    silence.comment,
                    _ts(now),
                    None if silence.starts_at is None else _ts(silence.starts_at),
                    silence.creator,
                ),
            )
        if cur.lastrowid is None:  # pragma: no cover - sqlite3 always sets it after an INSERT
            raise RuntimeError("INSERT returned no row id")
        return replace(
            silence,
            id=str(cur.lastrowid),
            until=_dt(_ts(silence.until)),
            starts_at=None if silence.starts_at is None else _dt(_ts(silence.starts_at)),
            created_at=_dt(_ts(now)),
        )

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """All silences by id, or only those not yet ended at ``active_at`` (including
        those that start later: a planned maintenance is listed before it begins)."""
        sql = "SELECT id, matcher, until, reason, created_at, starts_at, creator FROM silences"
        args: tuple[Any, ...] = ()
        if active_at is not None:
            sql += " WHERE until > ?"
            args = (_ts(active_at),)
        rows = self._connection().execute(sql + " ORDER BY id", args).fetchall()
        return [_silence(row) for row in rows]

    async def expire_silence(self, silence_id: int, now: datetime) -> Silence | None:
        """End a silence now (it stays listed, expired); None if there is no such id.
        Expiring an already ended one leaves its end as it was."""
        with self._write() as conn:
            conn.execute(
                "UPDATE silences SET until = ? WHERE id = ? AND until > ?",
                (_ts(now), silence_id, _ts(now)),
            )
            row = conn.execute(
                "SELECT id, matcher, until, reason, created_at, starts_at, creator "
                "FROM silences WHERE id = ?",
                (silence_id,),
            ).fetchone()
        return None if row is None else _silence(row)

    async def remove_silence(self, silence_id: int) -> bool:
        """Delete a silence; False if there was none with this id."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
        return cur.rowcount == 1

    # -- acknowledgements ---------------------------------------------------------------

    async def set_ack(self, ack: Acknowledgement) -> None:
        """Acknowledge a workflow, replacing any earlier acknowledgement of it."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO acks (workflow_key, by, note, created_at, until, ended_at) "
                "VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT (workflow_key) DO UPDATE SET "
                "by = excluded.by, note = excluded.note, created_at = excluded.created_at, "
                "until = excluded.until, ended_at = NULL",
                (ack.workflow_key, ack.by, ack.note, _ts(ack.created_at), _ts(ack.until)),
            )

    async def end_ack(self, workflow_key: str, now: datetime) -> bool:
        """Mark the workflow's acknowledgement ended (it changed again, or was withdrawn);
        False if none was in force."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE acks SET ended_at = ? WHERE workflow_key = ? AND ended_at IS NULL "
                "AND until > ?",
                (_ts(now), workflow_key, _ts(now)),
            )
        return cur.rowcount == 1

    async def list_acks(self, *, active_at: datetime | None = None) -> list[Acknowledgement]:
        """Every acknowledgement, or only those in force at ``active_at``."""
        sql = "SELECT workflow_key, by, note, created_at, until, ended_at FROM acks"
        args: tuple[Any, ...] = ()
        if active_at is not None:
            sql += " WHERE ended_at IS NULL AND until > ?"
            args = (_ts(active_at),)
        rows = self._connection().execute(sql + " ORDER BY workflow_key", args).fetchall()
        return [
            Acknowledgement(
                workflow_key=k, by=b, note=n, created_at=_dt(c), until=_dt(u), ended_at=_opt_dt(e)
            )
            for k, b, n, c, u, e in rows
        ]

    async def workflow_keys(self) -> list[str]:
        """The keys of every workflow with a stored state (to resolve ``ack WORKFLOW``)."""
        rows = self._connection().execute("SELECT workflow_key FROM states").fetchall()
        return sorted(r[0] for r in rows)

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
        row = self._connection().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    async def save_kv(self, key: str, value: Mapping[str, Any]) -> None:
        """Replace the document under ``key`` (JSON-serialisable, secret-free)."""
        with self._write() as conn:
            self._put_kv(conn, key, value)

    def _put_kv(self, conn: sqlite3.Connection, key: str, value: Mapping[str, Any]) -> None:
        conn.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, updated_at = excluded.updated_at",
            (key, _dumps(dict(value)), _ts(self._clock.now())),
        )

    async def load_url_keys(self) -> UrlKeys | None:
        data = await self.load_kv(codec.URL_KEYS_KEY)
        return None if data is None else codec.decode_url_keys(data)

    # -- housekeeping -------------------------------------------------------------------

    async def prune(self, before: datetime, *, batch: int = 500) -> int:
        """Delete up to ``batch`` finished deliveries and unreferenced events older than
        ``before``; return how many rows went. Call repeatedly (it is bounded, so it never
        holds the write lock long); pending deliveries and their events are never touched.

        A pruned event's dedup key is forgotten: keep ``before`` far beyond any window in
        which the engine could replay that event (days, not minutes).
        """
        cutoff = _ts(before)
        with self._write() as conn:
            gone = conn.execute(
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries "
                "WHERE state IN ('sent', 'dead') AND created_at < ? LIMIT ?)",
                (cutoff, batch),
            ).rowcount
            gone += conn.execute(
                "DELETE FROM events WHERE seq IN (SELECT e.seq FROM events e "
                "WHERE e.observed_at < ? AND NOT EXISTS (SELECT 1 FROM delivery_events de "
                "WHERE de.dedup_key = e.dedup_key) ORDER BY e.seq LIMIT ?)",
                (cutoff, batch),
            ).rowcount
        return int(gone)

    # -- lifecycle ----------------------------------------------------------------------

    async def ping(self) -> bool:
        """True if the file answers a trivial query."""
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def identity_problem(self) -> str | None:
        """Why the file at ``path`` is no longer the one this store writes, or None.

        A state file deleted or replaced while the daemon runs keeps receiving writes
        through the open descriptor (the old inode) that nobody will ever read; the next
        start would silently begin from an empty store. Comparing device and inode with
        the ones seen at open catches both.
        """
        try:
            now = _identity(self._path)
        except FileNotFoundError:
            return (
                f"state file {self._path} was deleted while the watcher ran; writes go to "
                "a file nobody will read: restore it, or restart the watcher to start an "
                "empty store"
            )
        except OSError as exc:
            return str(describe(self._path, exc))
        if now != self._identity:
            return (
                f"state file {self._path} was replaced while the watcher ran; writes go to "
                "the old file: restart the watcher to use the new one"
            )
        return None

    async def self_check(self) -> str | None:
        """One line saying why the store cannot commit now, or None when it can.

        Checks the file's identity, then writes a tiny probe row, then reports any write
        or multi-query read that failed since the previous call (a poll commit on a full
        disk, a damaged page met by the outbox).
        """
        if self._conn is None:
            return "the store is closed"
        problem = self.identity_problem()
        if problem is None:
            try:
                with self._write() as conn:
                    conn.execute(
                        "INSERT INTO kv (key, value, updated_at) VALUES ('watcher/probe', '{}', ?) "
                        "ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at",
                        (_ts(self._clock.now()),),
                    )
            except sqlite3.Error as exc:
                problem = str(describe(self._path, exc))
        failure, self._failure = self._failure, None
        return problem or failure

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Nothing to listen to: this process is the only writer (see ``Store.listen``)."""
        del callback

    async def close(self) -> None:
        """Close the connection (idempotent); the WAL is checkpointed by SQLite on close.

        Polls still queued for a group commit are committed first (their callers wait)."""
        while self._pending:
            self._flush()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _prepare_file(file: Path) -> Path:
    # Blocking, but once at startup and tiny; the migrations that follow block as well.
    file.parent.mkdir(parents=True, exist_ok=True)
    if not file.exists():
        fd = os.open(file, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    return file


def _silence(row: Sequence[Any]) -> Silence:
    silence_id, matcher, until, reason, created_at, starts_at, creator = row
    m = dict(json.loads(matcher))
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


def _identity(file: Path) -> tuple[int, int]:
    info = file.stat()
    return info.st_dev, info.st_ino


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
