"""An in-process ``Store``: the test fake and the store of the one-shot ``check``.

Same contract as the SQLite and PostgreSQL stores (the contract suite runs over all three):
one all-or-nothing commit per poll, events deduplicated by key, a URL's deliveries handed
out head first in creation order, ``seq`` never reused after a prune. Nothing survives the
process, which is exactly what ``check`` wants (it must not write the daemon's state file).

States and health are kept as the JSON documents the durable stores write (through
``watcher.store.codec``), so a value the others refuse (NaN, a non-JSON type) is refused
here too, and a returned state is never the caller's object.

Every method runs to completion without awaiting, so calls never interleave, like SQLite's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
from watcher.store import codec


@dataclass(slots=True)
class _Row:
    """A stored event: its seq, owner workflow and the event itself."""

    seq: int
    workflow_key: str
    event: Event


def _ts(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use aware UTC datetimes")
    return value.astimezone(UTC)


class MemoryStore:
    """In-memory ``Store``; ``MemoryStore()`` is ready to use."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._closed = False
        self._states: dict[str, str] = {}
        self._events: dict[str, _Row] = {}  # by dedup key, in insertion (= seq) order
        self._seq = 0
        self._deliveries: dict[int, Delivery] = {}  # by id, in creation order
        self._delivery_keys: dict[int, tuple[str, ...]] = {}
        self._next_delivery = 0
        self._docs: dict[str, str] = {}
        self._silences: dict[int, Silence] = {}
        self._next_silence = 0
        self._acks: dict[str, Acknowledgement] = {}
        self._url_keys: UrlKeys | None = None

    def _open(self) -> None:
        if self._closed:
            raise RuntimeError("the store is closed")

    # -- states -------------------------------------------------------------------------

    async def load_state(self, workflow_key: str) -> WatchState | None:
        self._open()
        text = self._states.get(workflow_key)
        return None if text is None else codec.decode_state(text)

    async def load_all_states(self) -> dict[str, WatchState]:
        self._open()
        return {key: codec.decode_state(text) for key, text in self._states.items()}

    async def workflow_keys(self) -> list[str]:
        self._open()
        return sorted(self._states)

    async def commit_poll(
        self,
        workflow_key: str,
        state: WatchState | None,
        events: Sequence[Event],
        deliveries: Sequence[PlannedDelivery],
        *,
        fence: Fence | None = None,
    ) -> list[Event]:
        """The same rules as the durable stores; everything that can fail (serialising)
        happens before the first change, so a failed commit changes nothing."""
        del fence  # one process, one writer: nothing to fence
        self._open()
        now = _ts(self._clock.now())
        state_json = await codec.encode_state(state)
        for e in events:  # the durable stores serialise every event: refuse what they do
            codec.dumps(e.to_dict())
            _ts(e.observed_at)
        if state_json is not None:
            self._states[workflow_key] = state_json
        new: list[Event] = []
        for event in events:
            if event.dedup_key in self._events:
                continue
            self._seq += 1
            self._events[event.dedup_key] = _Row(self._seq, workflow_key, event)
            new.append(event)
        new_keys = {e.dedup_key for e in new}
        for planned in deliveries:
            keys = tuple(dict.fromkeys(k for k in planned.event_keys if k in new_keys))
            if not keys:
                continue
            self._next_delivery += 1
            self._delivery_keys[self._next_delivery] = keys
            self._deliveries[self._next_delivery] = Delivery(
                id=self._next_delivery,
                url_key=planned.url_key,
                workflow_key=workflow_key,
                events=(),
                state="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        return new

    # -- the outbox ---------------------------------------------------------------------

    def _full(self, delivery: Delivery) -> Delivery:
        """The delivery with its events (those still stored), in message order."""
        keys = self._delivery_keys[delivery.id]
        events = tuple(self._events[k].event for k in keys if k in self._events)
        return replace(delivery, events=events)

    async def due_deliveries(self, now: datetime, limit: int = 100) -> list[Delivery]:
        """The head of each URL's queue if it is due, oldest first."""
        self._open()
        at = _ts(now)
        heads: dict[str, Delivery] = {}
        for delivery in self._deliveries.values():
            if delivery.state == "pending" and delivery.url_key not in heads:
                heads[delivery.url_key] = delivery
        due = sorted((d for d in heads.values() if d.next_attempt_at <= at), key=lambda d: d.id)
        return [self._full(d) for d in due[:limit]]

    def _update(self, delivery_id: int, **changes: Any) -> None:
        delivery = self._deliveries.get(delivery_id)
        if delivery is not None and delivery.state == "pending":
            self._deliveries[delivery_id] = replace(delivery, **changes)

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        self._open()
        d = self._deliveries.get(delivery_id)
        if d is not None:
            self._update(delivery_id, state="sent", sent_at=_ts(now), attempts=d.attempts + 1)

    async def mark_failed(
        self,
        delivery_id: int,
        now: datetime,
        error: str,
        next_attempt_at: datetime,
        *,
        maybe_delivered: bool = False,
    ) -> None:
        self._open()
        del now  # as in the durable stores: implied by next_attempt_at
        d = self._deliveries.get(delivery_id)
        if d is not None:
            self._update(
                delivery_id,
                attempts=d.attempts + 1,
                last_error=error,
                next_attempt_at=_ts(next_attempt_at),
                maybe_delivered=d.maybe_delivered + int(maybe_delivered),
            )

    async def mark_dead(
        self, delivery_id: int, now: datetime, error: str, *, maybe_delivered: bool = False
    ) -> None:
        self._open()
        d = self._deliveries.get(delivery_id)
        if d is not None:
            self._update(
                delivery_id,
                state="dead",
                attempts=d.attempts + 1,
                last_error=error,
                next_attempt_at=_ts(now),
                maybe_delivered=d.maybe_delivered + int(maybe_delivered),
            )

    async def rekey_deliveries(
        self, moves: Mapping[str, str], url_keys: UrlKeys | None = None
    ) -> dict[str, int]:
        """Move pending deliveries to their URL's new key (see ``Store.rekey_deliveries``)."""
        self._open()
        if url_keys is not None:
            self._url_keys = url_keys
        counts: dict[str, int] = {}
        for delivery_id, d in list(self._deliveries.items()):
            new = moves.get(d.url_key)
            if d.state == "pending" and new is not None and new != d.url_key:
                counts[d.url_key] = counts.get(d.url_key, 0) + 1
                self._deliveries[delivery_id] = replace(d, url_key=new)
        return counts

    async def load_url_keys(self) -> UrlKeys | None:
        self._open()
        return self._url_keys

    async def deliveries_for(self, event_keys: Sequence[str]) -> list[Delivery]:
        self._open()
        wanted = set(event_keys)
        return [
            self._full(d)
            for d in self._deliveries.values()
            if wanted.intersection(self._delivery_keys[d.id])
        ]

    async def list_deliveries(self, limit: int = 50, state: str | None = None) -> list[Delivery]:
        self._open()
        chosen = [d for d in reversed(self._deliveries.values()) if state in (None, d.state)]
        return [self._full(d) for d in chosen[:limit]]

    async def outbox_stats(self, now: datetime) -> OutboxStats:
        self._open()
        pending = [d for d in self._deliveries.values() if d.state == "pending"]
        dead = sum(1 for d in self._deliveries.values() if d.state == "dead")
        oldest = min((d.created_at for d in pending), default=None)
        retry = min((d.next_attempt_at for d in pending if d.next_attempt_at > now), default=None)
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        return OutboxStats(
            pending=len(pending), dead=dead, oldest_pending_age_s=age, next_retry_at=retry
        )

    # -- the event feed -----------------------------------------------------------------

    async def recent_events(self, *, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]:
        self._open()
        rows = list(self._events.values())
        chosen = [r for r in rows if r.seq > after_seq][:limit] if after_seq > 0 else rows[-limit:]
        if limit <= 0:
            chosen = []
        return [StoredEvent(seq=r.seq, event=r.event) for r in chosen]

    async def events_with_deliveries(self, limit: int = 50) -> list[EventWithDeliveries]:
        self._open()
        rows = list(self._events.values())[-limit:] if limit > 0 else []
        return [
            EventWithDeliveries(
                seq=r.seq,
                event=r.event,
                workflow_key=r.workflow_key,
                deliveries=tuple(await self.deliveries_for([r.event.dedup_key])),
            )
            for r in rows
        ]

    # -- target health and discovery -----------------------------------------------------

    async def load_health(self, target: str) -> TargetHealth | None:
        self._open()
        text = self._docs.get(codec.health_key(target))
        return None if text is None else codec.decode_health(json.loads(text))

    async def save_health(self, target: str, value: TargetHealth) -> None:
        self._open()
        self._docs[codec.health_key(target)] = codec.dumps(codec.health_doc(value))

    async def load_known_workflows(self, discovery_key: str) -> frozenset[str] | None:
        self._open()
        text = self._docs.get(discovery_key)
        return None if text is None else codec.decode_known(json.loads(text))

    async def save_known_workflows(self, discovery_key: str, ids: Iterable[str]) -> None:
        self._open()
        self._docs[discovery_key] = codec.dumps(codec.known_doc(ids))

    # -- silences and acknowledgements ---------------------------------------------------

    async def add_silence(self, silence: Silence) -> Silence:
        self._open()
        self._next_silence += 1
        stored = replace(
            silence,
            id=str(self._next_silence),
            until=_ts(silence.until),
            starts_at=None if silence.starts_at is None else _ts(silence.starts_at),
            created_at=_ts(self._clock.now()),
        )
        self._silences[self._next_silence] = stored
        return stored

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        self._open()
        return [s for s in self._silences.values() if active_at is None or s.until > _ts(active_at)]

    async def expire_silence(self, silence_id: int, now: datetime) -> Silence | None:
        self._open()
        silence = self._silences.get(silence_id)
        if silence is None:
            return None
        if silence.until > _ts(now):
            silence = self._silences[silence_id] = replace(silence, until=_ts(now))
        return silence

    async def remove_silence(self, silence_id: int) -> bool:
        self._open()
        return self._silences.pop(silence_id, None) is not None

    async def set_ack(self, ack: Acknowledgement) -> None:
        self._open()
        self._acks[ack.workflow_key] = replace(
            ack, created_at=_ts(ack.created_at), until=_ts(ack.until), ended_at=None
        )

    async def end_ack(self, workflow_key: str, now: datetime) -> bool:
        self._open()
        ack = self._acks.get(workflow_key)
        if ack is None or ack.ended_at is not None or ack.until <= _ts(now):
            return False
        self._acks[workflow_key] = replace(ack, ended_at=_ts(now))
        return True

    async def list_acks(self, *, active_at: datetime | None = None) -> list[Acknowledgement]:
        self._open()
        return [
            a
            for _, a in sorted(self._acks.items())
            if active_at is None or (a.ended_at is None and a.until > _ts(active_at))
        ]

    # -- housekeeping and lifecycle -------------------------------------------------------

    async def prune(self, before: datetime, *, batch: int = 500) -> int:
        """As the durable stores: finished deliveries, then unreferenced events, each up to
        ``batch``, older than ``before``."""
        self._open()
        cutoff = _ts(before)
        old = [
            i
            for i, d in self._deliveries.items()
            if d.state in ("sent", "dead") and d.created_at < cutoff
        ][:batch]
        for i in old:
            del self._deliveries[i]
            del self._delivery_keys[i]
        referenced = {k for keys in self._delivery_keys.values() for k in keys}
        stale = [
            key
            for key, row in self._events.items()
            if row.event.observed_at < cutoff and key not in referenced
        ][:batch]
        for key in stale:
            del self._events[key]
        return len(old) + len(stale)

    async def ping(self) -> bool:
        return not self._closed

    def identity_problem(self) -> str | None:
        return None

    async def self_check(self) -> str | None:
        return "the store is closed" if self._closed else None

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Nothing to listen to: this process is the only writer (see ``Store.listen``)."""
        del callback

    async def close(self) -> None:
        self._closed = True
