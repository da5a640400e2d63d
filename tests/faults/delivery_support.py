"""Helpers for the delivery fault tests: a webhook that can go down or be slow, a config
tweak, and read-only views of the daemon's store.

The daemon, its config and the receipt bookkeeping come from tests/e2e/crash_support.py:
the daemon is a real `cce-upgrade-watcher run` process, notifications go to a real json://
webhook whose body names every event it carries (``EVENT <kind> <dedup_key>``).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.e2e.crash_support import Receipt, Receiver


class FlakyReceiver(Receiver):
    """A crash_support Receiver on a fixed port that can go down (connection refused),
    come back, and answer late (``delay_s`` after it recorded the request; ``delay_next``
    for just the next requests, so a retry cannot race a test resetting ``delay_s``)."""

    def __init__(self) -> None:
        super().__init__()
        self.delay_s = 0.0
        self.delay_next: list[float] = []  # one-off delays for the next requests, first
        self.active = 0  # requests being answered right now
        self.on_receive = self._slow
        self._site: web.TCPSite | None = None
        self._port = 0

    async def start(self) -> None:
        await super().start()
        assert self._runner is not None
        self._site = next(iter(self._runner.sites))  # type: ignore[assignment]
        self._port = int(self._runner.addresses[0][1])

    async def go_down(self) -> None:
        assert self._site is not None
        await self._site.stop()

    async def come_back(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await self._site.start()

    async def _slow(self, _receipt: Receipt) -> None:
        self.active += 1
        try:
            delay = self.delay_next.pop(0) if self.delay_next else self.delay_s
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            self.active -= 1


def tweak_config(
    path: Path,
    *,
    url_options: dict[str, Any] | None = None,
    http_port: int | None = None,
) -> None:
    """Edit a crash_support config in place: per-URL options (a URL table instead of a
    plain string) and the HTTP server (for /metrics)."""
    text = path.read_text()
    if url_options:
        match = re.search(r'^urls = \["(?P<url>[^"]+)"\]$', text, re.MULTILINE)
        assert match is not None, "no plain notify URL in the config"
        extra = "".join(f", {k} = {json.dumps(v)}" for k, v in url_options.items())
        text = text.replace(match.group(0), f'urls = [{{url = "{match["url"]}"{extra}}}]')
    if http_port is not None:
        text = text.replace(
            "[http]\nenabled = false", f'[http]\nenabled = true\nlisten = "127.0.0.1:{http_port}"'
        )
        assert f":{http_port}" in text
    path.write_text(text)


@dataclass(frozen=True)
class StoredDelivery:
    id: int
    event_keys: tuple[str, ...]
    state: str
    attempts: int
    maybe_delivered: int
    last_error: str | None


def _read(file: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows from the store, read-only (the daemon may be running); [] before it exists."""
    if not file.exists():
        return []
    conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return []
    finally:
        conn.close()


def deliveries(file: Path) -> list[StoredDelivery]:
    columns = {row[1] for row in _read(file, "PRAGMA table_info(deliveries)")}
    # A store written before the maybe_delivered column (schema 1) reads as zero, so these
    # tests also run, and fail for the right reason, against the code before the fix.
    maybe = "maybe_delivered" if "maybe_delivered" in columns else "0"
    rows = _read(
        file,
        f"SELECT id, event_keys, state, attempts, {maybe}, last_error "  # noqa: S608 - constant
        "FROM deliveries ORDER BY id",
    )
    return [
        StoredDelivery(i, tuple(json.loads(keys)), state, attempts, maybe, error)
        for i, keys, state, attempts, maybe, error in rows
    ]


def stored_events(file: Path) -> list[dict[str, Any]]:
    """Every stored event's data, in seq order."""
    return [json.loads(d) for (d,) in _read(file, "SELECT data FROM events ORDER BY seq")]


def state_shows(file: Path, change: dict[str, Any] | None) -> bool:
    """Whether the stored watch state has seen a simulator step's change (the point's new
    status), or, for ``None`` (before the first step), any state at all."""
    states = [json.loads(s) for (s,) in _read(file, "SELECT state FROM states")]
    if change is None:
        return bool(states)
    for state in states:
        workflow = state.get("workflow") or {}
        for point in workflow.get("points") or ():
            if (
                point.get("task_type") == change["point"]
                and point.get("status") == change["status"]
            ):
                return True
    return False


async def wait_for(
    check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, log: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{log()}")
        await asyncio.sleep(0.05)


def receipts_by_delivery(
    receipts: list[Receipt], stored: list[StoredDelivery]
) -> list[tuple[float, int]]:
    """(arrival time, delivery id) of every receipt, mapped by the event keys it carries."""
    by_keys = {frozenset(d.event_keys): d.id for d in stored}
    out = []
    for receipt in receipts:
        keys = frozenset(key for _, key in receipt.events)
        assert keys in by_keys, f"a receipt matches no stored delivery: {sorted(keys)}"
        out.append((receipt.at, by_keys[keys]))
    return out
