"""``state migrate``: move an existing SQLite install's state into PostgreSQL (issue 11).

Why this module exists: going from one watcher to replicas must not re-announce every
workflow, forget what was already notified, drop queued messages or lose silences and
acknowledgements. ``copy_store`` copies through the ``Store`` port only (no SQL here), so it
works between any two stores and follows their schemas and migrations:

* events, in their order, each committed with the pending deliveries that carry it (a
  delivery gets a fresh attempt count; sent and dead deliveries are history and stay behind:
  their events are copied, so nothing is announced again);
* every workflow's watch state, so the first poll after the move diffs against it;
* silences (with new ids) and acknowledgements (ended ones stay ended);
* the record of which URL each delivery key stood for (``Store.load_url_keys``), so the
  first start on the new store moves the copied queues if the URL list changed meanwhile.

Target health and cluster discovery's known-workflow sets are not copied: they are rebuilt
by the first polls (a first listing keeps finished workflows quiet).

Run it with every watcher stopped, into an empty database; it refuses a destination that
already holds states or events.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from watcher import config_cli
from watcher.core.errors import WatcherError
from watcher.core.events import Event
from watcher.core.ports import Delivery, PlannedDelivery, Store, SystemClock

# Far more rows than any store keeps (the port's listing calls take a limit).
ALL = 2**31 - 1


@dataclass
class Copied:
    states: int = 0
    events: int = 0
    pending: int = 0
    silences: int = 0
    acks: int = 0

    def line(self) -> str:
        return (
            f"copied {self.states} workflow states, {self.events} events, {self.pending} pending"
            f" deliveries, {self.silences} silences, {self.acks} acknowledgements"
        )


class UnreachableError(WatcherError):
    """The destination database cannot be opened."""


class NotEmptyError(WatcherError):
    """The destination already holds state: copying into it would mix two histories."""


async def copy_store(src: Store, dst: Store) -> Copied:
    """Copy ``src`` into the empty ``dst`` (see the module docstring)."""
    if await dst.workflow_keys() or await dst.recent_events(limit=1):
        raise NotEmptyError("the destination store already holds workflow states or events")
    done = Copied()
    rows = await src.events_with_deliveries(limit=ALL)
    pending = await src.list_deliveries(limit=ALL, state="pending")
    # A delivery's events come from one commit: one run of one workflow's events in seq
    # order. Committing run by run keeps seq order, per-URL delivery order and each
    # delivery whole (a commit drops event keys that are already stored).
    by_last: dict[str, list[Delivery]] = {}
    for delivery in sorted(pending, key=lambda d: d.id):
        if delivery.events:
            by_last.setdefault(delivery.events[-1].dedup_key, []).append(delivery)
    run: list[Event] = []
    run_key: str | None = None
    for row in rows:
        if row.workflow_key != run_key and run:
            done.pending += await _commit_run(dst, run_key, run, by_last)
            run = []
        run_key = row.workflow_key
        run.append(row.event)
    if run:
        done.pending += await _commit_run(dst, run_key, run, by_last)
    done.events = len(rows)
    for key, state in (await src.load_all_states()).items():
        await dst.commit_poll(key, state, [], [])
        done.states += 1
    for silence in await src.list_silences():
        await dst.add_silence(silence)
        done.silences += 1
    for ack in await src.list_acks():
        await dst.set_ack(ack)
        if ack.ended_at is not None:
            await dst.end_ack(ack.workflow_key, ack.ended_at)
        done.acks += 1
    if (url_keys := await src.load_url_keys()) is not None:
        await dst.rekey_deliveries({}, url_keys)
    return done


async def _commit_run(
    dst: Store, key: str | None, events: Sequence[Event], by_last: dict[str, list[Delivery]]
) -> int:
    in_run = {e.dedup_key for e in events}
    planned = [
        PlannedDelivery(d.url_key, tuple(e.dedup_key for e in d.events))
        for e in events
        for d in by_last.get(e.dedup_key, [])
        if {x.dedup_key for x in d.events} <= in_run
    ]
    await dst.commit_poll(key or "", None, events, planned)
    return len(planned)


@click.group()
def state() -> None:
    """Manage the state store."""


@state.command()
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The SQLite file of the install to move (state_dir/watcher.sqlite3).",
)
@click.option(
    "--to",
    "dsn",
    envvar="WATCHER_STATE__DSN",
    default=None,
    help="PostgreSQL DSN (a secret: prefer WATCHER_STATE__DSN or the config's state__dsn).",
)
@config_cli.config_option
def migrate(source: Path, dsn: str | None, config_path: Path | None) -> None:
    """Copy a SQLite store into an empty PostgreSQL database (stop every watcher first)."""
    if not dsn:
        settings = config_cli.load_local_or_exit(config_path)
        if settings.state.dsn is None:
            click.echo("error: no DSN: give --to, WATCHER_STATE__DSN or state__dsn", err=True)
            sys.exit(2)
        dsn = settings.state.dsn.get_secret_value()
    try:
        copied = asyncio.run(_migrate(source, dsn))
    except WatcherError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(copied.line())


async def _migrate(source: Path, dsn: str) -> Copied:
    import psycopg  # noqa: PLC0415

    from watcher.store.postgres import PostgresStore  # noqa: PLC0415  (psycopg: only when used)
    from watcher.store.sqlite import SqliteStore  # noqa: PLC0415

    clock = SystemClock()
    src = await SqliteStore.open(source, clock=clock)
    try:
        try:
            dst = await PostgresStore.open(dsn, clock=clock)
        except psycopg.Error as exc:  # its reason names host and port, never the password
            raise UnreachableError(
                f"cannot open the PostgreSQL store: {' '.join(str(exc).split())}"
            ) from None
        try:
            return await copy_store(src, dst)
        finally:
            await dst.close()
    finally:
        await src.close()
