"""Interfaces between the pure core and the edges (no implementation here).

The runtime depends on these Protocols only, so the SQLite store can be swapped for a
shared PostgreSQL one and apprise for anything else without touching the engine or the
scheduler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from watcher.core.events import Event, Severity


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real clock, always aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """One (message, URL) unit decided at commit time: which events go to which URL."""

    url_key: str
    event_keys: tuple[str, ...]  # dedup keys, in the order the message lists them


@dataclass(frozen=True, slots=True)
class Delivery:
    """A stored delivery unit with its own attempt bookkeeping."""

    id: int
    url_key: str
    workflow_key: str
    events: tuple[Event, ...]
    state: str  # "pending" | "sent" | "dead"
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None = None
    sent_at: datetime | None = None
    # Attempts whose outcome is unknown: the request went out and no answer came within
    # the send timeout, so the service may have the message ("maybe delivered").
    maybe_delivered: int = 0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store lists it, with its sequence number (the feed cursor)."""

    seq: int
    event: Event


class Store(Protocol):
    """Durable state: snapshots, events with unique dedup keys, the delivery outbox."""

    async def load_state(self, workflow_key: str) -> dict[str, Any] | None:
        """The persisted watch state of one workflow (engine's JSON form), or None."""
        ...

    async def load_all_states(self) -> dict[str, dict[str, Any]]: ...

    async def commit_poll(
        self,
        workflow_key: str,
        state: dict[str, Any] | None,
        events: Sequence[Event],
        deliveries: Sequence[PlannedDelivery],
    ) -> list[Event]:
        """Write the new state, the events and their deliveries in ONE transaction.

        Events whose dedup key is already stored are skipped, and dropped from the
        deliveries; a delivery left with no event is not created. Returns the events that
        were new. ``state=None`` keeps the stored state (used for watcher.* events).
        """
        ...

    async def due_deliveries(self, now: datetime, limit: int = 100) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest first; at most one per URL
        is the head of its queue (a URL's deliveries go out in creation order)."""
        ...

    async def mark_sent(self, delivery_id: int, now: datetime) -> None: ...

    async def mark_failed(
        self,
        delivery_id: int,
        now: datetime,
        error: str,
        next_attempt_at: datetime,
        *,
        maybe_delivered: bool = False,
    ) -> None:
        """Count a failed attempt; ``maybe_delivered`` when its outcome is unknown."""
        ...

    async def mark_dead(
        self, delivery_id: int, now: datetime, error: str, *, maybe_delivered: bool = False
    ) -> None: ...

    async def recent_events(self, *, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]: ...

    async def deliveries_for(self, event_keys: Sequence[str]) -> list[Delivery]: ...

    async def outbox_stats(self, now: datetime) -> dict[str, float]:
        """pending count, dead count, oldest pending age in seconds."""
        ...

    async def load_kv(self, key: str) -> dict[str, Any] | None:
        """A small JSON document (target health, a cluster's known workflow ids)."""
        ...

    async def save_kv(self, key: str, value: dict[str, Any]) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


DEFAULT_SEND_TIMEOUT_S = 30.0
"""How long one send attempt waits for the service's answer unless configured per URL:
longer than apprise's own 4 s read timeout, which made slow but working webhooks look
failed (and receive the message again on every retry)."""

MAX_SEND_TIMEOUT_S = 3600.0


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str | None = None  # already free of secrets
    # The request was sent but no answer came in time: the service may have the message.
    # Still a failure (it is retried), but reported as "maybe delivered".
    uncertain: bool = False


class Sender(Protocol):
    """Sends one rendered message to one configured notification URL."""

    async def send(
        self, url_key: str, *, title: str, body: str, severity: Severity
    ) -> SendResult: ...


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    title: str
    body: str
    severity: Severity
    extra: dict[str, Any] = field(default_factory=dict)
