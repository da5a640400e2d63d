"""Silences and acknowledgements added at run time: the daemon's cache of them.

Why this module exists: operators add silences and acknowledgements while the daemon runs,
through the API (this process) or the CLI (another process writing the same SQLite file;
WAL lets both work). Polls must not read the store for them on every commit, so this cache
is refreshed right after every write made through it and every ``REFRESH_S`` seconds, which
is how CLI writes reach the daemon without a reload.

It also applies them to a poll's events before the commit: a muted event is still stored,
with ``details["silenced_by"]`` naming the silence, and every event of an acknowledged
workflow carries ``details["acknowledged"]`` (the first message after the acknowledgement
says who and why). An acknowledgement ends when the workflow changes again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

import structlog

from watcher.core.acks import Acknowledgement, changes_workflow
from watcher.core.events import Event
from watcher.core.ports import Clock, PlannedDelivery, Store
from watcher.core.silences import Silence, silenced_by
from watcher.notify import routing
from watcher.notify.url import NotifyUrl

log = structlog.get_logger(__name__)

REFRESH_S = 2.0  # how soon a silence or acknowledgement written by the CLI takes effect

Planner = Callable[[Sequence[Event], datetime], list[PlannedDelivery]]


class OpsState:
    """Config silences plus the store's silences and acknowledgements, cached."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        on_count: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config_silences: list[Silence] = []
        self.stored_silences: list[Silence] = []
        self.acks: dict[str, Acknowledgement] = {}
        self._on_count = on_count

    # -- reading ------------------------------------------------------------------------

    async def refresh(self) -> None:
        now = self.clock.now()
        self.stored_silences = await self.store.list_silences(active_at=now)
        self.acks = {a.workflow_key: a for a in await self.store.list_acks(active_at=now)}
        self._on_count(sum(1 for s in self.all_silences() if s.active(now)))

    async def run(self, period: float = REFRESH_S) -> None:
        """Refresh forever. A failed read (the file locked past busy_timeout by another
        process, say) keeps the last good cache and is logged; the next period retries."""
        while True:
            await asyncio.sleep(period)
            try:
                await self.refresh()
            except Exception as exc:  # any backend's error (sqlite3, psycopg): logged, retried
                log.error("silences.refresh_failed", error=str(exc))

    def all_silences(self) -> list[Silence]:
        return [*self.config_silences, *self.stored_silences]

    def ack_for(self, workflow_key: str, now: datetime) -> Acknowledgement | None:
        ack = self.acks.get(workflow_key)
        return ack if ack is not None and ack.in_force(now) else None

    def planner(self, urls: Sequence[NotifyUrl], routes: Sequence[routing.Route]) -> Planner:
        """``routing.plan`` with the silences in force at commit time (never stale config)."""

        def plan(events: Sequence[Event], now: datetime) -> list[PlannedDelivery]:
            return routing.plan(events, urls, routes, self.all_silences(), now)

        return plan

    # -- applied to a poll's events ---------------------------------------------------------

    def annotate(self, workflow_key: str, events: Sequence[Event], now: datetime) -> list[Event]:
        """Mark muted events with their silence's id and every event of an acknowledged
        workflow with the acknowledgement (routing and templates read them)."""
        silences = self.all_silences()
        ack = self.ack_for(workflow_key, now)
        out = []
        for event in events:
            details = dict(event.details)
            silence = silenced_by(event, silences, now)
            if silence is not None:
                details["silenced_by"] = silence.id
            if ack is not None:
                details["acknowledged"] = {"by": ack.by, "note": ack.note, "text": ack.text()}
            out.append(replace(event, details=details) if details != event.details else event)
        return out

    async def committed(self, workflow_key: str, events: Sequence[Event], now: datetime) -> None:
        """End the workflow's acknowledgement once it changed again (after the commit, so
        the message about the change is the one that names the acknowledgement)."""
        if self.ack_for(workflow_key, now) is not None and changes_workflow(events):
            await self.store.end_ack(workflow_key, now)
            self.acks.pop(workflow_key, None)
            log.info("ack.ended", workflow=workflow_key, reason="workflow changed")

    # -- writing (the API; the CLI writes the store directly) -------------------------------

    async def add_silence(self, silence: Silence) -> Silence:
        stored = await self.store.add_silence(silence)
        await self.refresh()
        log.info("silence.added", id=stored.id, creator=stored.creator)
        return stored

    async def expire_silence(self, silence_id: int) -> Silence | None:
        expired = await self.store.expire_silence(silence_id, self.clock.now())
        await self.refresh()
        if expired is not None:
            log.info("silence.expired", id=expired.id)
        return expired

    async def list_silences(self) -> list[Silence]:
        """Config silences first, then every stored one (expired ones too), by id."""
        return [*self.config_silences, *await self.store.list_silences()]

    async def acknowledge(self, ack: Acknowledgement) -> None:
        await self.store.set_ack(ack)
        await self.refresh()
        log.info("ack.added", workflow=ack.workflow_key, by=ack.by)

    async def unacknowledge(self, workflow_key: str) -> bool:
        ended = await self.store.end_ack(workflow_key, self.clock.now())
        await self.refresh()
        return ended

    async def workflow_keys(self) -> list[str]:
        return await self.store.workflow_keys()

    def workflow_acks(self) -> dict[str, Acknowledgement]:
        now = self.clock.now()
        return {k: a for k, a in self.acks.items() if a.in_force(now)}
