"""Test doubles for the HTTP surface: a static StatusSource, event factories, an SSE reader.

The store is the real SqliteStore; only the daemon's status (which the runtime computes)
is a double, because the HTTP layer only reads it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from watcher.core.events import Event, Severity, TargetRef
from watcher.core.ports import Store, StoredEvent
from watcher.http.feed import EventFeed

TARGET = TargetRef(
    name="prod-eu",
    region="ap-southeast-1",
    project_id="0123456789abcdef0123456789abcdef",
    cluster_id="b4b9e60f-8aa2-11ee-af09-0255ac10004f",
    labels={"team": "platform", "env": "prod"},
)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class StaticStatus:
    """A StatusSource whose answers the test sets directly."""

    health: tuple[bool, str] = (True, "")
    readiness: tuple[bool, list[str]] = (True, [])
    views: list[dict[str, Any]] = field(default_factory=list)
    target_views: list[dict[str, Any]] = field(default_factory=list)

    def healthy(self) -> tuple[bool, str]:
        return self.health

    def ready(self) -> tuple[bool, list[str]]:
        return self.readiness

    def workflows(self) -> list[dict[str, Any]]:
        return self.views

    def targets(self) -> list[dict[str, Any]]:
        return self.target_views


def make_event(
    n: int,
    *,
    kind: str = "task.started",
    severity: Severity = Severity.INFO,
    workflow_id: str = "wf-1",
    message: str | None = None,
) -> Event:
    return Event(
        dedup_key=f"{workflow_id}:{kind}:{n}",
        kind=kind,
        severity=severity,
        target=TARGET,
        observed_at=T0 + timedelta(seconds=n),
        message=message or f"event number {n}",
        workflow_id=workflow_id,
        from_version="v1.27",
        to_version="v1.28",
        task_type="Cluster",
    )


async def commit(store: Store, events: Sequence[Event]) -> list[StoredEvent]:
    """Commit events as one poll would and return them with their seqs."""
    before = await store.recent_events(after_seq=0, limit=1)
    head = before[-1].seq if before else 0
    await store.commit_poll("wf-key", None, list(events), [])
    if head == 0:
        return await store.recent_events(after_seq=0, limit=len(events))
    return await store.recent_events(after_seq=head, limit=len(events))


async def commit_and_publish(
    store: Store, feed: EventFeed, events: Sequence[Event]
) -> list[StoredEvent]:
    stored = await commit(store, events)
    feed.publish(stored)
    return stored


@dataclass
class Frame:
    """One Server-Sent Events frame (or a comment line)."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    comment: str | None = None
    retry: str | None = None

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class SseReader:
    """Reads SSE frames from an aiohttp response, one at a time."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 3.0) -> Frame | None:
        """The next frame or comment; None at the end of the stream."""
        frame = Frame()
        seen = False
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return frame if seen else None
                line = raw.decode().rstrip("\n")
                if line == "":
                    if seen:
                        return frame
                    continue
                if line.startswith(":"):
                    return Frame(comment=line[1:].strip())
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                seen = True
                if name == "data":
                    frame.data = value if frame.data is None else frame.data + "\n" + value
                elif name in {"id", "event", "retry"}:
                    setattr(frame, name, value)

    async def next_event(self, timeout: float = 3.0) -> Frame | None:
        """The next frame that is not a comment or a bare retry hint."""
        while True:
            frame = await self.next(timeout)
            if frame is None or (frame.comment is None and frame.event is not None):
                return frame
