"""``silence add|list|expire`` and ``ack``: mute and acknowledge from a shell, like amtool.

Why this module exists: silences and acknowledgements are data in the state store, not
config edits. These commands write the store directly (SQLite WAL lets them run beside the
daemon, which picks the change up within ``watcher.runtime.ops.REFRESH_S`` seconds); the
same fields and checks as ``/api/v1/silences`` and ``/api/v1/acks`` (``watcher.opsinput``).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from watcher import config_cli
from watcher.core.errors import WatcherError
from watcher.core.ports import Store, SystemClock
from watcher.core.silences import Silence
from watcher.core.wording import clock
from watcher.opsinput import InputError, ack_from, resolve_workflow, silence_from
from watcher.runtime.app import STORE_FILE
from watcher.runtime.wiring import config_silences
from watcher.store import open_store

T = TypeVar("T")


def _with_store(config_path: Path | None, work: Callable[[Store], Awaitable[T]]) -> T:
    settings = config_cli.load_local_or_exit(config_path)
    path = Path(settings.state_dir) / STORE_FILE

    async def run() -> T:
        store = await open_store(settings, SystemClock())
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (InputError, WatcherError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except sqlite3.Error as exc:
        click.echo(f"error: state store {path}: {exc}", err=True)
        sys.exit(2)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> str:
    return "-" if value is None else clock(value)


def _describe(s: Silence) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (
            ("target", s.target),
            ("cluster", s.cluster_id),
            ("workflow", s.workflow_id),
        )
        if value
    ]
    if tuple(s.kinds) != ("*",):
        parts.append("kinds=" + ",".join(s.kinds))
    parts += [f"{k}={v}" for k, v in s.labels.items()]
    return " ".join(parts) or "(everything)"


@click.group()
def silence() -> None:
    """Mute matching events for a while, without editing the config (stored in the state
    store; the running daemon applies a change within seconds)."""


@silence.command("add")
@config_cli.config_option
@click.option("--target", help="Target name glob, e.g. prod-*.")
@click.option("--cluster", "cluster_id", help="Cluster id.")
@click.option("--workflow", "workflow_id", help="Workflow id.")
@click.option("--kind", "kinds", multiple=True, help="Event kind glob (repeatable), e.g. task.*.")
@click.option("--label", "labels", multiple=True, help="Target label key=value (repeatable).")
@click.option("--start", "starts_at", help="Start (ISO 8601 with offset); default now.")
@click.option("--until", "until", help="End (ISO 8601 with offset).")
@click.option("--for", "duration", help="Duration instead of --until, e.g. 2h; default 2h.")
@click.option("--creator", default=None, help="Who adds it; default the login name.")
@click.option("--comment", required=True, help="Why (shown in listings and on the page).")
@click.option("--json", "as_json", is_flag=True, help="Print the stored silence as JSON.")
def silence_add(
    config_path: Path | None,
    target: str | None,
    cluster_id: str | None,
    workflow_id: str | None,
    kinds: tuple[str, ...],
    labels: tuple[str, ...],
    starts_at: str | None,
    until: str | None,
    duration: str | None,
    creator: str | None,
    comment: str,
    as_json: bool,
) -> None:
    """Add a silence; every given matcher must match (give at least one; --target '*'
    mutes everything). Prints its id."""
    data: dict[str, Any] = {
        "target": target,
        "cluster_id": cluster_id,
        "workflow_id": workflow_id,
        "kinds": list(kinds) or None,
        "labels": list(labels),
        "starts_at": starts_at,
        "until": until,
        "for": duration,
        "creator": creator or getpass.getuser(),
        "comment": comment,
    }

    async def work(store: Store) -> Silence:
        return await store.add_silence(silence_from(data, _now()))

    stored = _with_store(config_path, work)
    if as_json:
        click.echo(json.dumps(stored.to_json(), indent=2))
    else:
        click.echo(f"silence {stored.id} added: {_describe(stored)} until {_utc(stored.until)}")


@silence.command("list")
@config_cli.config_option
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
@click.option("--json", "as_json", is_flag=True)
def silence_list(config_path: Path | None, show_all: bool, as_json: bool) -> None:
    """Silences in force or planned (config file ones first, then stored ones)."""
    settings = config_cli.load_local_or_exit(config_path)
    from_config = config_silences(settings)
    now = _now()

    async def work(store: Store) -> list[Silence]:
        return await store.list_silences(active_at=None if show_all else now)

    silences = [
        *(s for s in from_config if show_all or s.until > now),
        *_with_store(config_path, work),
    ]
    if as_json:
        click.echo(
            json.dumps([s.to_json() | {"active": s.active(now)} for s in silences], indent=2)
        )
        return
    if not silences:
        click.echo("no silences")
        return
    for s in silences:
        state = "active" if s.active(now) else ("planned" if s.until > now else "expired")
        click.echo(
            f"{s.id:<10} {state:<8} {_describe(s)}  from {_utc(s.starts_at)} "
            f"until {_utc(s.until)}  by {s.creator or '-'}: {s.comment}"
        )


@silence.command("expire")
@config_cli.config_option
@click.argument("silence_id")
def silence_expire(config_path: Path | None, silence_id: str) -> None:
    """End a silence now (it stays listed with --all)."""
    if silence_id.startswith("config:"):
        click.echo(
            f"error: silence {silence_id} comes from the config file; remove it there", err=True
        )
        sys.exit(2)
    if not silence_id.isdigit():
        click.echo("error: a silence id is a number, as printed by `silence list`", err=True)
        sys.exit(2)

    async def work(store: Store) -> Silence | None:
        return await store.expire_silence(int(silence_id), _now())

    expired = _with_store(config_path, work)
    if expired is None:
        click.echo(f"error: no silence {silence_id}", err=True)
        sys.exit(1)
    click.echo(f"silence {expired.id} expired at {_utc(expired.until)}")


@click.command()
@config_cli.config_option
@click.argument("workflow")
@click.option("--by", "by", default=None, help="Who acknowledges; default the login name.")
@click.option("--note", default="", help="What you are doing about it.")
@click.option("--for", "duration", default="2h", show_default=True, help="How long.")
@click.option("--remove", is_flag=True, help="Withdraw the acknowledgement instead.")
def ack(
    config_path: Path | None, workflow: str, by: str | None, note: str, duration: str, remove: bool
) -> None:
    """Acknowledge WORKFLOW (its id, or TARGET/ID): its reminders and repeated stall notices
    stop until the time is up or the workflow changes again; its next message names you."""

    async def work(store: Store) -> str:
        key = resolve_workflow(await store.workflow_keys(), workflow)
        now = _now()
        if remove:
            if not await store.end_ack(key, now):
                raise InputError(f"workflow {key} has no acknowledgement in force")
            return f"acknowledgement of {key} withdrawn"
        item = ack_from({"by": by or getpass.getuser(), "note": note, "for": duration}, key, now)
        await store.set_ack(item)
        return f"{key} {item.text()} until {_utc(item.until)}"

    click.echo(_with_store(config_path, work))
