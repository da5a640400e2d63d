"""Interfaces between the pure core and the edges (no implementation here).

The runtime, the HTTP API and the CLI depend on these Protocols only, so the SQLite store
can be swapped for the shared PostgreSQL one or the in-process ``MemoryStore``, the CCE
client for the simulator, and apprise for anything else, without touching the engine or
the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from watcher.core.events import Event, Severity

if TYPE_CHECKING:  # type-only: ports stay importable from every core module without cycles
    from watcher.core.acks import Acknowledgement
    from watcher.core.health import TargetHealth
    from watcher.core.models import Api, Cluster, PreCheckTask, UpgradeTask, Workflow
    from watcher.core.silences import Silence
    from watcher.core.state import WatchState


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real clock, always aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Fence:
    """The fencing token of a commit: the lease it was polled under (PostgreSQL HA).

    ``lease_key`` is the target name the lease row is keyed by; ``holder`` the replica id;
    ``epoch`` the lease's epoch when this replica took it. A commit carrying a fence whose
    holder or epoch no longer match the lease row, or whose lease expired (by the database's
    clock), is refused with ``LeaseLostError`` and writes nothing.
    """

    lease_key: str
    holder: str
    epoch: int


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
class UrlKeys:
    """Which notification URL each delivery key stood for when the outbox was last filled.

    URLs are secrets and never stored; ``fingerprints`` maps each key to a salted HMAC of
    its URL (``watcher.notify.url.url_fingerprints``), enough to recognise the same URL
    under another key after a restart, and not to recover it.
    """

    salt: str
    fingerprints: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store lists it, with its sequence number (the feed cursor)."""

    seq: int
    event: Event


@dataclass(frozen=True, slots=True)
class EventWithDeliveries:
    """One stored event and every delivery that carries it (for the ``events`` command)."""

    seq: int
    event: Event
    workflow_key: str
    deliveries: tuple[Delivery, ...]


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """The outbox at a glance (metrics, ``/readyz``, the demo)."""

    pending: int = 0
    dead: int = 0
    oldest_pending_age_s: float = 0.0  # 0 when nothing is pending
    next_retry_at: datetime | None = None  # the earliest pending retry later than ``now``


class Priority(IntEnum):
    """Who waits first for the request budget: polls of an active workflow before idle
    ones. Passed down each call as an argument (no context variable)."""

    ACTIVE = 0
    IDLE = 1


class CloudSource(Protocol):
    """What the watcher needs from the CCE client (watcher.cloud.client.CceClient).

    ``priority`` reaches the client's request limiter (runtime/budget.py) as an argument.
    ``list_workflows`` leaves out the items whose uid is in ``skip`` (workflows the caller
    is done with), unparsed.
    """

    async def show_workflow(
        self, cluster_id: str, workflow_id: str, *, api: Api, priority: Priority = ...
    ) -> Workflow: ...
    async def list_workflows(
        self, cluster_id: str, *, api: Api, priority: Priority = ..., skip: AbstractSet[str] = ...
    ) -> tuple[Workflow, ...]: ...
    async def show_precheck(
        self, cluster_id: str, task_id: str, *, api: Api, priority: Priority = ...
    ) -> PreCheckTask: ...
    async def show_upgrade_task(
        self, cluster_id: str, task_id: str, *, api: Api, priority: Priority = ...
    ) -> UpgradeTask: ...
    async def show_cluster(
        self, cluster_id: str, *, api: Api, priority: Priority = ...
    ) -> Cluster: ...
    async def list_clusters(self, *, api: Api, priority: Priority = ...) -> tuple[Cluster, ...]: ...


class Store(Protocol):
    """Durable state: watch states, events with unique dedup keys, the delivery outbox,
    target health, silences and acknowledgements.

    Implemented by ``watcher.store.sqlite.SqliteStore`` (the default),
    ``watcher.store.postgres.PostgresStore`` (shared by replicas) and
    ``watcher.store.memory.MemoryStore`` (tests, ``check``); one contract test suite
    (tests/store/test_store_contract.py) runs over all three. The port speaks domain types
    only: how a state is serialised is each store's business.

    Times are aware UTC in and out. A method that cannot reach or write its storage raises
    (``watcher.store.trouble.StoreError`` or the driver's error); it never returns a
    made-up value, except ``ping`` and ``self_check``, whose job is to answer.

    PostgreSQL HA (issue 11): replicas split the targets under leases with epochs
    (``LeaseStore``) and claim deliveries. This port carries it without changing its
    callers' meaning: ``commit_poll`` takes a keyword-only ``Fence`` and refuses a commit
    from a holder that lost its lease; ``due_deliveries`` claims what it returns
    (``FOR UPDATE SKIP LOCKED`` with a claim lease) and ``mark_sent``/``mark_failed``/
    ``mark_dead`` release that claim; ``listen`` reports other replicas' commits.
    Single-process stores accept and ignore the fence, have no claims, and ``listen``
    returns at once.
    """

    # -- watch states and the poll commit -------------------------------------------------

    async def load_state(self, workflow_key: str) -> WatchState | None:
        """The persisted watch state of one workflow, or None."""
        ...

    async def load_all_states(self) -> dict[str, WatchState]:
        """Every persisted watch state by workflow key (daemon start, reload)."""
        ...

    async def workflow_keys(self) -> list[str]:
        """The keys of every workflow with a stored state, sorted (``ack WORKFLOW``)."""
        ...

    async def commit_poll(
        self,
        workflow_key: str,
        state: WatchState | None,
        events: Sequence[Event],
        deliveries: Sequence[PlannedDelivery],
        *,
        fence: Fence | None = None,
    ) -> list[Event]:
        """Write the new state, the events and their deliveries in ONE transaction.

        Events whose dedup key is already stored (or repeated earlier in ``events``) are
        skipped, and dropped from the deliveries; a delivery left with no event is not
        created. Returns the events that were new, in the given order. ``state=None``
        keeps the stored state (watcher.* events, chunks of a large commit). Nothing is
        written if any part fails.

        ``fence``: PostgreSQL checks the lease row in the same transaction and raises
        ``LeaseLostError`` (nothing written) when holder or epoch differ or the lease has
        expired. Single-process stores accept and ignore it.
        """
        ...

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(workflow_key)`` for every commit by any replica, until cancelled.

        PostgreSQL: LISTEN on a dedicated connection (not from the pool), reconnecting after
        an outage; after each (re)connect ``callback("")`` says "anything may have changed".
        Single-process stores return at once: the process sees its own commits.
        """
        ...

    # -- the outbox -----------------------------------------------------------------------

    async def due_deliveries(self, now: datetime, limit: int = 100) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest first; at most one per URL
        is the head of its queue (a URL's deliveries go out in creation order).

        PostgreSQL also CLAIMS what it returns for this replica (``claim_as``): a head under
        another replica's live claim is not returned, so across replicas a URL has at most
        one delivery in flight; ``mark_*`` release the claim, an expired claim is due again.
        """
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

    async def deliveries_for(self, event_keys: Sequence[str]) -> list[Delivery]:
        """Every delivery carrying any of these events, in creation order."""
        ...

    async def rekey_deliveries(
        self, moves: Mapping[str, str], url_keys: UrlKeys | None = None
    ) -> dict[str, int]:
        """Move the PENDING deliveries of each old URL key to its new key, all at once.

        A reload that names, renames or reorders URLs changes their keys; their queued
        deliveries must follow or they are never sent. All moves apply in one transaction
        and simultaneously, so swaps and chains (``a->b, b->a``) work. Deliveries keep
        their ids, so a URL's queue keeps its creation order; when several queues end up
        under one key (two old keys onto one new key, or a new key that already had
        pending deliveries) that queue is ordered by id, i.e. by creation, across them.
        Sent and dead deliveries keep the key they were sent (or given up) under.
        ``url_keys`` (when given) is recorded in the same transaction, so the keys the
        queues stand under and the record of what they mean never disagree after a crash.
        Returns how many deliveries moved per old key (keys that moved none are omitted).
        """
        ...

    async def load_url_keys(self) -> UrlKeys | None:
        """What the URL keys stood for at the last ``rekey_deliveries(..., url_keys)``."""
        ...

    async def list_deliveries(self, limit: int = 50, state: str | None = None) -> list[Delivery]:
        """The most recent deliveries, newest first, optionally only one state."""
        ...

    async def outbox_stats(self, now: datetime) -> OutboxStats: ...

    # -- the event feed -------------------------------------------------------------------

    async def recent_events(self, *, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]:
        """Events in ascending ``seq``: the next ``limit`` after a cursor (``after_seq > 0``)
        or, with no cursor, the latest ``limit`` (a tail)."""
        ...

    async def events_with_deliveries(self, limit: int = 50) -> list[EventWithDeliveries]:
        """The latest ``limit`` events, oldest first, each with its deliveries."""
        ...

    # -- target health and cluster discovery ----------------------------------------------

    async def load_health(self, target: str) -> TargetHealth | None:
        """The saved health of a target (by name), or None."""
        ...

    async def save_health(self, target: str, value: TargetHealth) -> None: ...

    async def load_known_workflows(self, discovery_key: str) -> frozenset[str] | None:
        """The workflow ids a cluster discovery has seen, or None before its first listing
        (so the first listing's finished workflows stay quiet)."""
        ...

    async def save_known_workflows(self, discovery_key: str, ids: Iterable[str]) -> None: ...

    # -- silences and acknowledgements ----------------------------------------------------

    async def add_silence(self, silence: Silence) -> Silence:
        """Store a silence; return it with the store's ``id`` and ``created_at``."""
        ...

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """All silences by id, or only those not yet ended at ``active_at`` (including
        those that start later)."""
        ...

    async def expire_silence(self, silence_id: int, now: datetime) -> Silence | None:
        """End a silence now (it stays listed); None if there is no such id."""
        ...

    async def remove_silence(self, silence_id: int) -> bool: ...

    async def set_ack(self, ack: Acknowledgement) -> None:
        """Acknowledge a workflow, replacing any earlier acknowledgement of it."""
        ...

    async def end_ack(self, workflow_key: str, now: datetime) -> bool:
        """End the workflow's acknowledgement in force; False if there was none."""
        ...

    async def list_acks(self, *, active_at: datetime | None = None) -> list[Acknowledgement]: ...

    # -- housekeeping and health of the store itself --------------------------------------

    async def prune(self, before: datetime, *, batch: int = 500) -> int:
        """Delete up to ``batch`` finished deliveries and unreferenced events older than
        ``before``; return how many rows went. Pending deliveries and their events stay."""
        ...

    async def ping(self) -> bool:
        """True if the storage answers a trivial query (never raises)."""
        ...

    def identity_problem(self) -> str | None:
        """Why the storage this store writes is no longer the one the next start would
        read (a replaced SQLite file), or None."""
        ...

    async def self_check(self) -> str | None:
        """One line saying why the store cannot commit now, or None when it can; also
        reports a write failure seen since the previous call (never raises)."""
        ...

    async def close(self) -> None:
        """Release the storage (idempotent)."""
        ...


@runtime_checkable
class LeaseStore(Protocol):
    """The lease table replicas split the targets with (PostgreSQL only; see
    ``watcher.runtime.leases``). Every expiry is judged by the DATABASE clock (``now()``),
    never by a replica's, so replicas with skewed clocks still agree. Durations in seconds.
    """

    replica_id: str

    def claim_as(self, replica_id: str, claim_s: float) -> None:
        """Claim deliveries as ``replica_id`` for ``claim_s`` seconds from now on."""
        ...

    async def heartbeat(self, replica_id: str, ttl_s: float) -> None:
        """Say this replica is alive for ``ttl_s`` more seconds."""
        ...

    async def live_replicas(self) -> int:
        """Replicas whose heartbeat has not expired (at least 1 once this one beat)."""
        ...

    async def leave(self, replica_id: str) -> None:
        """A clean stop: this replica no longer counts as live (its share is redistributed
        at once, not after its heartbeat expires)."""
        ...

    async def renew_leases(
        self, holder: str, keys: Sequence[str], lease_s: float
    ) -> dict[str, int]:
        """Extend ``holder``'s leases on ``keys`` (ONE statement); the ones still held, by
        key, with their epoch. A key missing from the answer is lost."""
        ...

    async def take_leases(
        self, holder: str, keys: Sequence[str], lease_s: float, limit: int
    ) -> dict[str, int]:
        """Take up to ``limit`` of ``keys`` that are free or expired; the taken ones with
        their new epoch (one more than the previous holder's)."""
        ...

    async def release_leases(self, holder: str, keys: Sequence[str]) -> None:
        """Give up ``holder``'s leases on ``keys`` now (free to take at once)."""
        ...

    async def renew_claims(self, holder: str, claim_s: float) -> int:
        """Extend ``holder``'s claims on pending deliveries (a long send keeps its claim
        while its replica lives); how many."""
        ...


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
