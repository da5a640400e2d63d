"""The poller: one poll of a workflow, one poll of a cluster's workflows, target health.

One workflow poll is fetch (cloud/client.py) -> parse (cloud/responses.py) -> evaluate (pure
core/engine.py) -> plan deliveries (pure notify/routing.py, via the ops cache) -> commit
state, events and deliveries in one transaction (the Store port) -> wake the outbox
(delivery/dispatcher.py). Nothing is sent before the commit, so a crash at any point either
repeats the poll (the events get the same dedup keys and are stored once) or finds it done.

The fetch is one request per polled thing (issue 12): an explicit workflow target's
``WorkflowWatch`` is a scheduler job that shows its workflow; a cluster target is ONE
``ClusterWatch`` job that lists the cluster's workflows and diffs each from that one answer
(``WorkflowWatch.apply``; there the watch only holds state). Both jobs share ONE failure
path (``run_job``): any exception out of a poll (a cloud error, an odd value, a store that
cannot write) is classified into a ``core.outcome.PollOutcome``, counted in the metrics,
logged once per failure run and once on recovery (``FailureRun``), recorded in target
health (kept in memory while the store itself fails), shown as ``last_error`` and retried on
the capped backoff, which honours Retry-After.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import structlog

from watcher.core import cadence, engine, health, rules
from watcher.core.console import workflow_url
from watcher.core.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    LeaseLostError,
    ServerError,
    ThrottledError,
    WatcherError,
    WorkflowGoneError,
)
from watcher.core.events import Event, TargetRef
from watcher.core.models import (
    TERMINAL_PHASES,
    Api,
    Cluster,
    PreCheckTask,
    TaskType,
    UpgradeTask,
    Workflow,
)
from watcher.core.outcome import PollOutcome
from watcher.core.policy import Policy, PollPolicy
from watcher.core.ports import Clock, CloudSource, Fence, PlannedDelivery, Priority, Store
from watcher.core.state import WatchState
from watcher.core.summary import summarize
from watcher.runtime.registry import WatchKey, resumable

if TYPE_CHECKING:
    from watcher.runtime.ops import OpsState

log = structlog.get_logger(__name__)
T = TypeVar("T")

AUTH_RETRY_S = 300.0
# A workflow with more points than this is evaluated in a worker thread (the engine is pure
# and its inputs immutable), and its events are committed in chunks of COMMIT_CHUNK, so
# thousands of points never block the event loop for long (issue 7).
LARGE_WORKFLOW_POINTS = 200
COMMIT_CHUNK = 100
LOGGED_EVENTS = 20  # event.new lines per poll; the rest are counted in one line
_HEALTHY = health.TargetHealth()  # five bad signatures lock an AK for five minutes: never retry hot


def api_of(target: TargetRef) -> Api:
    return "autopilot" if target.api == "autopilot" else "cce"


Planner = Callable[[Sequence[Event], datetime], list[PlannedDelivery]]


@dataclass
class WatchContext:
    """Collaborators every watch shares; replaced as a whole on reload."""

    store: Store
    plan: Planner
    policy: Policy
    poll: PollPolicy
    clock: Clock
    on_committed: Callable[[list[Event]], None]
    on_polled: Callable[[str, PollOutcome, float], None] = lambda target, result, seconds: None
    unreachable_after: int = 5
    max_backoff_s: float = 600.0
    rand: Callable[[], float] = random.random
    # Run-time silences and acknowledgements (None: none, as in `check`).
    ops: OpsState | None = None
    # -- HA (runtime/leases.py): replicas split the targets by lease; a target's polls run
    # only on its holder, every commit carries its fence. Defaults: one process holds all.
    holds: Callable[[str], bool] = lambda target: True
    fence: Callable[[str], Fence | None] = lambda target: None
    on_lease_lost: Callable[[str], None] = lambda target: None
    not_held_s: float = 30.0  # next look at a target another replica polls


# The drivers' own errors: the store failed, not the watcher (psycopg's include the pool's
# PoolTimeout and PoolClosed, i.e. a PostgreSQL store that cannot be reached).
_STORE_ERRORS = (sqlite3.Error, psycopg.Error)


def classify(exc: BaseException) -> PollOutcome:
    """The outcome of a poll that raised ``exc`` (health, metrics, logs): transport covers
    other cloud and credential failures, internal anything nothing anticipated."""
    if isinstance(exc, AuthError):
        return PollOutcome.AUTH
    if isinstance(exc, ThrottledError):
        return PollOutcome.THROTTLED
    if isinstance(exc, ServerError):
        return PollOutcome.SERVER
    if isinstance(exc, BadResponseError):
        return PollOutcome.BAD_RESPONSE
    if isinstance(exc, ApiError):
        return PollOutcome.API
    if isinstance(exc, WatcherError):
        return PollOutcome.TRANSPORT
    if isinstance(exc, _STORE_ERRORS):
        return PollOutcome.STORE
    return PollOutcome.INTERNAL


def describe_error(exc: BaseException) -> str:
    """One line for ``last_error`` and logs: our own errors say what failed; anything else
    also names its type, since its message alone ("date value out of range") rarely does."""
    text = " ".join(str(exc).split())[:300]
    if isinstance(exc, WatcherError):
        return text or type(exc).__name__
    prefix = "state store" if isinstance(exc, _STORE_ERRORS) else "internal error"
    return f"{prefix}: {type(exc).__name__}: {text}" if text else f"{prefix}: {type(exc).__name__}"


class FailureRun:
    """The failure/recovery bookkeeping of one job (a workflow watch, a cluster watch).

    Logs a failure when a run of failures starts or changes kind, and the recovery once, so
    a target down for a day leaves two lines, not a traceback every poll. Unexpected errors
    (kind ``internal``) carry their traceback on that first line only.
    """

    def __init__(self) -> None:
        self.last_error: str | None = None
        self.failing_kind: PollOutcome | None = None
        self.failures = 0

    def failed(self, exc: BaseException, event: str) -> PollOutcome:
        kind = classify(exc)
        self.last_error = describe_error(exc)
        self.failures += 1
        if kind != self.failing_kind:
            log.warning(
                event,
                error=self.last_error,
                kind=kind,
                exc_info=exc if kind is PollOutcome.INTERNAL else None,
            )
        else:
            log.debug(event, error=self.last_error, kind=kind, failures=self.failures)
        self.failing_kind = kind
        return kind

    def ok(self, event: str) -> None:
        if self.failing_kind is not None:
            log.info(event, after_failures=self.failures, last_kind=str(self.failing_kind))
        self.failing_kind = None
        self.failures = 0


_PENDING_HEALTH_EVENTS = 100  # health events held while the store cannot take them


class TargetHealth:
    """Health of one configured target across all of its polls; persisted in the store.

    The in-memory state is the truth: it is updated before anything is written, so a store
    that cannot write (a full disk, a damaged file) never loses a failure count or crashes
    the poll that records it. Unsaved state and events are written on the next record after
    the store recovers; until then ``unsaved_error`` says why (and it is logged once).
    """

    def __init__(self, target: TargetRef, state: health.TargetHealth) -> None:
        self.target = target
        self.state = state
        self.unsaved_error: str | None = None
        self._dirty = False
        self._pending: deque[Event] = deque(maxlen=_PENDING_HEALTH_EVENTS)

    async def record(self, ctx: WatchContext, error: BaseException | None) -> None:
        if error is None and self.state == _HEALTHY and not self._dirty and not self._pending:
            return  # the common case on every good poll: nothing to record or send
        now = ctx.clock.now()
        if error is None:
            events, new = health.record_success(self.state, now, target=self.target)
        else:
            events, new = health.record_failure(
                self.state, now, classify(error), ctx.unreachable_after, target=self.target
            )
        self._dirty = self._dirty or new != self.state
        self.state = new
        self._pending.extend(events)
        await self._save(ctx, now)

    async def _save(self, ctx: WatchContext, now: datetime) -> None:
        try:
            if self._dirty:
                await ctx.store.save_health(self.target.name, self.state)
                self._dirty = False
            if self._pending:
                events = list(self._pending)
                key = str(WatchKey.of_target(self.target.name))
                if ctx.ops is not None:
                    events = list(ctx.ops.annotate(key, events, now))
                stored = await ctx.store.commit_poll(
                    key, None, events, ctx.plan(events, now), fence=ctx.fence(self.target.name)
                )
                self._pending.clear()
                ctx.on_committed(stored)
        except LeaseLostError:  # HA: the target's new holder keeps its health from now on
            self._pending.clear()
            return
        except Exception as exc:  # the poll's own outcome reports it too
            if self.unsaved_error is None:
                log.error(
                    "health.unsaved",
                    error=describe_error(exc),
                    pending_events=len(self._pending),
                )
            self.unsaved_error = describe_error(exc)
            return
        if self.unsaved_error is not None:
            log.info("health.saved")
            self.unsaved_error = None

    @property
    def failures(self) -> int:
        return int(self.state.consecutive_failures)

    def view(self) -> dict[str, Any]:
        """The target's row in ``/api/v1/workflows``'s ``targets`` list."""
        since = self.state.failing_since
        return {
            "name": self.target.name,
            "consecutive_failures": self.failures,
            "failing_since": since.isoformat() if since else None,
            "last_error_kind": self.state.last_error_kind if self.failures else None,
            "unsaved_error": self.unsaved_error,
        }


@dataclass
class WorkflowWatch:
    """One workflow until it reaches a terminal phase (then one last look, then stop).

    A job of its own for an explicit workflow target (``poll``: a show call); a state holder
    under its cluster's ``ClusterWatch`` otherwise, fed that cluster's listing (``apply``).
    """

    client: CloudSource
    target: TargetRef
    workflow_id: str
    health: TargetHealth
    display_name: str | None = None
    state: WatchState | None = None
    cluster_name: str | None = None
    next_poll_at: datetime | None = None
    final_poll_done: bool = False
    console_template: str | None = None  # notify.console_url, for the summary's link
    failures: FailureRun = field(default_factory=FailureRun, repr=False)
    _last_workflow: Workflow | None = field(default=None, repr=False)
    _deadline: datetime | None = field(default=None, repr=False)
    _deadline_policy: Policy | None = field(default=None, repr=False)
    _active: bool = field(default=False, repr=False)
    _active_for: WatchState | None = field(default=None, repr=False)
    watch_key: WatchKey = field(init=False, repr=False)
    key: str = field(init=False, repr=False)  # watch_key as the store and the API spell it

    def __post_init__(self) -> None:
        self.watch_key = WatchKey.workflow(self.target.name, self.workflow_id)
        self.key = str(self.watch_key)

    @property
    def last_error(self) -> str | None:
        return self.failures.last_error

    @last_error.setter
    def last_error(self, value: str | None) -> None:
        self.failures.last_error = value

    def adopt(self, state: WatchState | None) -> None:
        """HA: take the state another replica committed (a takeover, or the view of a
        target polled elsewhere); what was cached from this replica's own polls goes."""
        self.state = state
        self._last_workflow = None
        self._deadline = None
        self._deadline_policy = None

    def priority(self) -> Priority:
        """Polls of an active workflow wait less for the request budget than idle ones."""
        return Priority.ACTIVE if self.is_active() else Priority.IDLE

    def is_active(self) -> bool:
        # Cached per state: the state changes on commits, the question is asked every poll.
        if self._active_for is not self.state:
            self._active = self.state is not None and cadence.is_active(self.state)
            self._active_for = self.state
        return self._active

    async def poll(self, ctx: WatchContext) -> float | None:
        """One poll of an explicit workflow target (a show call); returns seconds until the
        next one, or None when watching is over."""
        structlog.contextvars.bind_contextvars(target=self.target.name, workflow=self.workflow_id)
        delay = await run_job(ctx, self.target.name, self.health, self.failures, "poll", self._poll)
        now = ctx.clock.now()
        self.next_poll_at = now + timedelta(seconds=delay) if delay is not None else None
        if self.is_large():
            await asyncio.sleep(0)  # the caller summarises it next: a step of its own
        return delay

    def is_large(self) -> bool:
        return self.state is not None and len(self.state.workflow.points) > LARGE_WORKFLOW_POINTS

    async def _poll(self, ctx: WatchContext) -> float | None:
        try:
            workflow = await self.client.show_workflow(
                self.target.cluster_id,
                self.workflow_id,
                api=api_of(self.target),
                priority=self.priority(),
            )
        except WorkflowGoneError:
            delay = await self.vanished(ctx)
        else:
            delay = await self.apply(ctx, workflow)
        await self.health.record(ctx, None)
        return delay

    async def apply(self, ctx: WatchContext, workflow: Workflow) -> float | None:
        """Diff one answer about this workflow (its show call, or its item in the cluster's
        listing) and commit what changed; returns seconds until it needs looking at again,
        or None when watching is over. Raises what must fail the poll (a store that cannot
        write); the caller's ``run_job`` classifies it."""
        now = ctx.clock.now()
        if self.state is not None and self._unchanged(workflow, now, ctx):
            self.last_error = None
            return self._then(
                cadence.interval_until(self.state, now, ctx.poll, self._deadline), ctx
            )
        await self._ensure_cluster_name()
        enrichment = await self._enrich(workflow)
        now = ctx.clock.now()
        large = len(workflow.points) > LARGE_WORKFLOW_POINTS
        result = await _offload(
            large,
            engine.evaluate,
            self.state,
            workflow,
            now,
            ctx.policy,
            target=self.target,
            cluster_name=self.cluster_name,
            enrichment=enrichment,
            ack=ctx.ops.ack_for(self.key, now) if ctx.ops is not None else None,
        )
        await self._commit(ctx, result, now)  # a large state is serialised off the loop
        if large:
            await asyncio.sleep(0)  # the commit was one long step; the summary is the next
        self._last_workflow = workflow
        self._deadline = await _offload(large, rules.next_deadline, result.state, now, ctx.policy)
        self._deadline_policy = ctx.policy
        self.last_error = None
        return self._then(cadence.interval_until(result.state, now, ctx.poll, self._deadline), ctx)

    def _then(self, delay: float | None, ctx: WatchContext) -> float | None:
        """The next delay; a terminal workflow gets one last poll (final timestamps), then
        None, which stops its job."""
        if delay is None and not self.final_poll_done:
            self.final_poll_done = True
            return ctx.poll.idle_s
        return delay

    def _unchanged(self, workflow: Workflow, now: datetime, ctx: WatchContext) -> bool:
        """True when this poll cannot produce an event, so diff and commit can be skipped.

        The client returns the identical object for an identical body. Time rules still run
        when one is due, and the state is committed at least every ``late_after / 2`` so a
        later change is never mistaken for one observed late.
        """
        state = self.state
        if state is None or workflow is not self._last_workflow:
            return False
        if now - state.observed_at >= ctx.policy.late_after / 2:
            return False
        if self._deadline_policy is not ctx.policy:  # computed under an older config
            return False
        return self._deadline is None or self._deadline > now

    async def _commit(self, ctx: WatchContext, result: engine.Evaluation, now: datetime) -> None:
        events = list(result.events)
        if ctx.ops is not None and events:
            events = list(ctx.ops.annotate(self.key, events, now))
        # Thousands of events go in chunks, each with its own deliveries, the state with the
        # last one: a crash between chunks repeats the poll from the old state, and the
        # events already stored are skipped by their dedup keys (none lost, none twice).
        stored: list[Event] = []
        while len(events) > COMMIT_CHUNK:
            chunk, events = events[:COMMIT_CHUNK], events[COMMIT_CHUNK:]
            part = await ctx.store.commit_poll(
                self.key, None, chunk, ctx.plan(chunk, now), fence=ctx.fence(self.target.name)
            )
            stored.extend(part)
            if part:
                ctx.on_committed(part)
            await asyncio.sleep(0)
        last = await ctx.store.commit_poll(
            self.key,
            result.state,
            events,
            ctx.plan(events, now) if events else [],
            fence=ctx.fence(self.target.name),
        )
        stored.extend(last)
        self.state = result.state
        if ctx.ops is not None and stored:
            await ctx.ops.committed(self.key, stored, now)
        if last:
            ctx.on_committed(last)
        for event in stored[:LOGGED_EVENTS]:
            log.info(
                "event.new",
                kind=event.kind,
                severity=str(event.severity),
                dedup_key=event.dedup_key,
            )
        if len(stored) > LOGGED_EVENTS:
            log.info("event.new_more", count=len(stored) - LOGGED_EVENTS)

    async def vanished(self, ctx: WatchContext) -> float | None:
        """The cloud answered 404 for this workflow: report it once (None: watching is over)."""
        now = ctx.clock.now()
        if self.state is None:
            # Never seen: most likely a wrong workflow id in the config. Keep trying slowly
            # and say so; it may appear (created after the watcher started).
            self.last_error = "workflow not found (404)"
            log.warning("workflow.not_found")
            return ctx.poll.idle_s
        if self.state.workflow.phase in TERMINAL_PHASES:
            return None
        result = engine.evaluate_vanished(
            self.state, now, target=self.target, cluster_name=self.cluster_name
        )
        await self._commit(ctx, result, now)
        return None

    async def _ensure_cluster_name(self) -> None:
        if self.cluster_name is None:
            self.cluster_name = await cluster_display_name(
                self.client, self.target, self.priority()
            )

    async def _enrich(self, workflow: Workflow) -> engine.Enrichment | None:
        wanted = engine.enrichment_wanted(self.state, workflow)
        if not wanted:
            return None
        precheck: PreCheckTask | None = None
        upgrade: UpgradeTask | None = None
        cluster_id, api, priority = self.target.cluster_id, api_of(self.target), self.priority()
        # Enrichment is a nice-to-have: its failure must not fail the poll or lose events.
        if "precheck" in wanted and (point := workflow.point(TaskType.PRECHECK)) and point.task_id:
            try:
                precheck = await self.client.show_precheck(
                    cluster_id, point.task_id, api=api, priority=priority
                )
            except WatcherError as exc:
                log.info("enrich.precheck_failed", error=str(exc))
        if "upgrade" in wanted and (point := workflow.point(TaskType.CLUSTER)) and point.task_id:
            try:
                upgrade = await self.client.show_upgrade_task(
                    cluster_id, point.task_id, api=api, priority=priority
                )
            except WatcherError as exc:
                log.info("enrich.upgrade_failed", error=str(exc))
        cluster: Cluster | None = None
        if "cluster" in wanted:
            try:
                cluster = await self.client.show_cluster(cluster_id, api=api, priority=priority)
            except WatcherError as exc:
                log.info("enrich.cluster_failed", error=str(exc))
        return engine.Enrichment(precheck=precheck, upgrade=upgrade, cluster=cluster)

    def view(self, now: datetime) -> dict[str, Any]:
        """The API's view; before the first good poll, a card that says why there is none."""
        summary = self.summary(now)
        if summary is not None:
            return summary
        return {
            "key": self.key,
            "target": self.target.to_dict(),
            "display_name": self.display_name,
            "cluster_name": self.cluster_name or None,
            "workflow_id": self.workflow_id,
            "phase": None,
            "from_version": None,
            "to_version": None,
            "observed_at": None,
            "next_poll_at": self.next_poll_at.isoformat() if self.next_poll_at else None,
            "last_error": self.last_error,
            "precheck_expires_at": None,
            "precheck_expires_in_s": None,
            "points": [],
            "lines": [],
        }

    def summary(self, now: datetime) -> dict[str, Any] | None:
        if self.state is None:
            return None
        track = self.state.tracks.get(TaskType.CLUSTER.value)
        cluster = self.state.workflow.point(TaskType.CLUSTER)
        running = cluster is not None and cluster.status in ("Queuing", "Running")
        return summarize(
            self.state.workflow,
            target=self.target,
            now=now,
            key=self.key,
            display_name=self.display_name,
            cluster_name=self.cluster_name or None,
            observed_at=self.state.observed_at,
            next_poll_at=self.next_poll_at,
            last_error=self.last_error,
            progress=track.progress if track is not None and running else None,
            paused=bool(track is not None and running and track.paused),
            console_url=workflow_url(
                self.console_template,
                self.target.region,
                self.target.project_id,
                self.target.cluster_id,
                self.workflow_id,
            ),
        )


async def cluster_display_name(client: CloudSource, target: TargetRef, priority: Priority) -> str:
    """The cluster's name for messages (metadata.alias, else its name); "" when the cloud
    cannot say, so nobody asks again every poll (messages then use the id)."""
    try:
        cluster = await client.show_cluster(
            target.cluster_id, api=api_of(target), priority=priority
        )
    except WatcherError as exc:  # a name is cosmetic; other errors fail the poll
        log.info("cluster.name_unavailable", error=str(exc))
        return ""
    return cluster.display_name or ""


def _ignore(*_args: Any) -> None:
    return None


@dataclass
class ClusterWatch:
    """A cluster target: ONE scheduler job, ONE ListUpgradeWorkFlows per run.

    Every listed workflow is diffed from that one answer by its ``WorkflowWatch``, which is
    a state holder here, not a job (``WorkflowWatch.apply``). The next run comes at the
    cadence of the most urgent live workflow, and never later than ``discovery_s`` (how soon
    a new workflow is noticed). Show calls remain only where the listing cannot answer:
    enrichment of a change, the cluster's name (once), and a live workflow missing from the
    listing (one show to tell "vanished" from a listing that left it out).

    On the very first listing of a cluster, workflows that already ended (Success/Cancel)
    are remembered without a notification: nobody wants a page about last year's upgrade.
    One created after this process began watching the cluster (``watching_since``) is news
    although it ended: its upgrade ran while the first listings failed (a cloud outage at
    start, a store that could not write, a lease still loading), and staying quiet about it
    would lose it. Any workflow that appears later is watched, even if it ended between two
    listings. A workflow that ended gets one last diff on the next listing (final
    timestamps), then costs only its entry in ``known``.
    """

    client: CloudSource
    target: TargetRef
    health: TargetHealth
    display_name: str | None = None
    console_template: str | None = None
    # A workflow is watched from now on (the app indexes it for the API and status page).
    on_watch: Callable[[WorkflowWatch], None] = _ignore
    # After each diff of a workflow (the app's gauges); a None delay: watching it is over.
    on_applied: Callable[[WorkflowWatch, float | None], None] = _ignore
    known: set[str] = field(default_factory=set)
    listed_before: bool = False
    # When this process began watching the cluster (see the docstring); None: every
    # workflow the first listing finds ended is history (``check``, tests).
    watching_since: datetime | None = None
    # ``check`` shows the newest listed workflow when none runs; the daemon keeps none (a
    # parsed finished workflow per cluster is what "finished costs a set entry" rules out).
    keep_newest: bool = False
    newest: Workflow | None = None
    live: dict[str, WorkflowWatch] = field(default_factory=dict)  # by workflow id
    cluster_name: str | None = None
    next_poll_at: datetime | None = None
    failures: FailureRun = field(default_factory=FailureRun, repr=False)

    @property
    def watch_key(self) -> WatchKey:
        return WatchKey.discovery(self.target.name)

    @property
    def key(self) -> str:
        return str(self.watch_key)

    @property
    def last_error(self) -> str | None:
        return self.failures.last_error

    def priority(self) -> Priority:
        """The listing answers for every workflow: it waits like the most urgent one."""
        active = any(w.is_active() for w in self.live.values())
        return Priority.ACTIVE if active else Priority.IDLE

    async def poll(self, ctx: WatchContext) -> float:
        structlog.contextvars.bind_contextvars(target=self.target.name)
        delay = await run_job(
            ctx, self.target.name, self.health, self.failures, "discovery", self._list
        )
        assert delay is not None  # a cluster watch never ends by itself
        self.next_poll_at = ctx.clock.now() + timedelta(seconds=delay)
        for watch in self.live.values():
            watch.next_poll_at = self.next_poll_at
        return delay

    async def _list(self, ctx: WatchContext) -> float:
        workflows = await self.client.list_workflows(
            self.target.cluster_id,
            api=api_of(self.target),
            priority=self.priority(),
            skip=self.known.difference(self.live),  # finished: not even parsed
        )
        if self.keep_newest:
            self.newest = workflows[0] if workflows else None
        known_before, first = len(self.known), not self.listed_before
        delays: list[float] = [ctx.poll.discovery_s]
        errors: list[BaseException] = []
        listed: set[str] = set()
        for workflow in workflows:
            uid = workflow.uid
            listed.add(uid)
            watch = self.live.get(uid)
            if watch is None:
                if uid in self.known:
                    continue  # it ended: a set entry, nothing more
                if first and workflow.phase in TERMINAL_PHASES and not self._news(workflow):
                    self.known.add(uid)  # history at the first look: remembered quietly
                    continue
                log.info("discovery.new_workflow", workflow=uid, phase=workflow.phase)
                watch = self._adopt(uid, None)
            await self._apply(ctx, watch, workflow, delays, errors)
        for uid, watch in list(self.live.items()):
            if uid not in listed:
                await self._apply(ctx, watch, None, delays, errors)
        self.listed_before = True
        # Write when a workflow was added, and once on the first listing: its record is
        # also the marker that later listings are not the first (see the class docstring).
        if len(self.known) != known_before or first:
            await ctx.store.save_known_workflows(self.key, self.known)
        if errors:
            raise errors[0]  # the cluster's poll fails once, whatever number of workflows
        # Only now: a failure of every poll after a good listing (a full disk) must still
        # add up to "unreachable", not be reset by the listing each time.
        await self.health.record(ctx, None)
        self.failures.last_error = None
        return min(delays)

    async def _apply(
        self,
        ctx: WatchContext,
        watch: WorkflowWatch,
        workflow: Workflow | None,
        delays: list[float],
        errors: list[BaseException],
    ) -> None:
        """Diff one workflow (None: missing from the listing, asked for by one show call).

        A failure is the workflow's own (its card says why) and the cluster's poll's, once;
        the other workflows of the listing are still diffed.
        """
        uid = watch.workflow_id
        try:
            with structlog.contextvars.bound_contextvars(workflow=uid):
                if self.cluster_name is None:
                    self.cluster_name = await cluster_display_name(
                        self.client, self.target, watch.priority()
                    )
                watch.cluster_name = self.cluster_name
                delay = await self._diff(ctx, watch, workflow)
        except (asyncio.CancelledError, LeaseLostError):
            raise  # HA: another replica holds the target now; the rest is its business
        except Exception as exc:  # see the docstring
            watch.last_error = describe_error(exc)
            errors.append(exc)
            return
        if delay is None:  # it ended (or vanished): its final diff is done
            del self.live[uid]
            self.known.add(uid)
            watch.next_poll_at = None
        else:
            self.known.add(uid)  # only once diffed: a failed first diff is retried
            delays.append(delay)
        self.on_applied(watch, delay)
        if watch.is_large():
            await asyncio.sleep(0)  # the summary of a large workflow is a step of its own

    async def _diff(
        self, ctx: WatchContext, watch: WorkflowWatch, workflow: Workflow | None
    ) -> float | None:
        if workflow is not None:
            return await watch.apply(ctx, workflow)
        try:
            shown = await watch.client.show_workflow(
                self.target.cluster_id,
                watch.workflow_id,
                api=api_of(self.target),
                priority=watch.priority(),
            )
        except WorkflowGoneError:
            if watch.state is None:
                return None  # never diffed and gone: nothing to report
            return await watch.vanished(ctx)
        return await watch.apply(ctx, shown)  # the listing left it out; it is still there

    def _news(self, workflow: Workflow) -> bool:
        """Created after this process began watching the cluster (see the docstring)."""
        since, created = self.watching_since, workflow.created_at
        return since is not None and created is not None and created >= since

    def hold(self, uid: str, state: WatchState | None) -> WorkflowWatch:
        """The holder of a workflow of this cluster (made when missing; HA: a workflow
        another replica polls, shown as it committed it)."""
        return self.live.get(uid) or self._adopt(uid, state)

    def drop(self, uid: str) -> None:
        """A workflow another replica finished: only its entry in ``known`` remains."""
        self.live.pop(uid, None)
        self.known.add(uid)

    def _adopt(self, uid: str, state: WatchState | None) -> WorkflowWatch:
        watch = WorkflowWatch(
            client=self.client,
            target=self.target,
            workflow_id=uid,
            health=self.health,
            display_name=self.display_name,
            state=state,
            cluster_name=self.cluster_name,
            console_template=self.console_template,
        )
        self.live[uid] = watch
        self.on_watch(watch)
        return watch

    def view(self) -> dict[str, Any]:
        """The cluster watch's part of a target listing (API, status page)."""
        return {"key": self.key, "last_error": self.last_error}

    async def restore(self, store: Store, states: Mapping[str, WatchState]) -> None:
        """After a restart: the known ids, and a holder for each workflow that had not ended."""
        known = await store.load_known_workflows(self.key)
        if known is not None:
            self.known = set(known)
            self.listed_before = True
        for uid in resumable(states, self.target.name):
            if uid not in self.live:
                key = str(WatchKey.workflow(self.target.name, uid))
                self._adopt(uid, states[key])


def delay_cap(ctx: WatchContext) -> float:
    """The longest wait any job may be given: the backoff cap, or a longer configured
    interval (an ``idle_s`` above ``max_backoff_s`` is the operator's choice)."""
    poll = ctx.poll
    longest = max(poll.idle_s, poll.failed_s, poll.discovery_s, poll.active_s, AUTH_RETRY_S)
    return cadence.bounded(max(ctx.max_backoff_s, longest), cadence.LONGEST_S)


async def _offload(large: bool, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a pure computation in a worker thread when its input is large, else inline."""
    if large:
        return await asyncio.to_thread(func, *args, **kwargs)
    return func(*args, **kwargs)


async def run_job(
    ctx: WatchContext,
    target: str,
    target_health: TargetHealth,
    failures: FailureRun,
    name: str,
    body: Callable[[WatchContext], Awaitable[float | None]],
) -> float | None:
    """Run one poll ``body`` of either job: the ONE failure path (see module).

    Returns the capped delay until the next run, or None when ``body`` says watching is
    over. Cancellation is never swallowed.
    """
    if not ctx.holds(target):  # HA: another replica polls this target now
        return cadence.bounded(ctx.not_held_s, delay_cap(ctx))
    started = time.monotonic()
    try:
        delay = await body(ctx)
    except asyncio.CancelledError:
        raise
    except LeaseLostError:  # HA: not a failure of the target; its new holder polls it
        ctx.on_lease_lost(target)
        ctx.on_polled(target, PollOutcome.LEASE_LOST, time.monotonic() - started)
        return cadence.bounded(ctx.not_held_s, delay_cap(ctx))
    except Exception as exc:  # every failure is a failed poll, see module
        outcome = failures.failed(exc, f"{name}.failed")
        delay = await _failed(ctx, target_health, exc)
        ctx.on_polled(target, outcome, time.monotonic() - started)
    else:
        failures.ok(f"{name}.recovered")
        ctx.on_polled(target, PollOutcome.OK, time.monotonic() - started)
    return None if delay is None else cadence.bounded(delay, delay_cap(ctx))


async def _failed(ctx: WatchContext, target_health: TargetHealth, exc: BaseException) -> float:
    """Record a failed poll in the target's health; the delay until the next try (a fixed
    pause for auth, else the capped backoff, never shorter than the server's Retry-After)."""
    await target_health.record(ctx, exc)
    if isinstance(exc, AuthError):
        return AUTH_RETRY_S  # a fixed, bounded pause: repeated bad signatures lock the key
    return cadence.failure_delay(
        target_health.failures,
        ctx.poll.active_s,
        ctx.max_backoff_s,
        ctx.rand(),
        retry_after=exc.retry_after if isinstance(exc, ThrottledError) else None,
    )
