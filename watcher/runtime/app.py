"""The app: the ONE composition root of the daemon, under a single AsyncExitStack.

Why this module exists: it builds every part from the Settings and owns them: the store,
the HTTP session, the notification parts, the dispatcher, the HTTP server, the scheduler
and the root tasks (dispatcher, feed pump, ops cache, self-alerts, heartbeat, watchdog,
housekeeping). Each part is pushed onto one ``AsyncExitStack`` as it is acquired, with its
release as a named, bounded shutdown phase (``lifecycle.phase``), so ``stop()`` releases
exactly what was acquired, in reverse, even after a ``start()`` that failed halfway.

It is also what HTTP reads (``StatusSource``: liveness, readiness, the workflow list) and
where a reload is applied without losing state or pending deliveries (an invalid config is
logged and ignored). How the process runs (signals, supervision, crashes) is
``lifecycle.py``; what is watched is ``registry.py``; one poll is ``poller.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from watcher.cloud.http import make_session
from watcher.config import Settings, Target
from watcher.core import health, selfhealth
from watcher.core.errors import ConfigError
from watcher.core.events import Event, TargetRef
from watcher.core.models import TERMINAL_PHASES
from watcher.core.outcome import PollOutcome
from watcher.core.ports import Clock, CloudSource, Priority, Store, SystemClock, UrlKeys
from watcher.core.state import WatchState
from watcher.delivery.dispatcher import Dispatcher
from watcher.http.feed import EventFeed
from watcher.http.server import HttpServer, build_app, start_http
from watcher.notify.sender import AppriseSender
from watcher.notify.url import follow_keys, url_fingerprints
from watcher.runtime import housekeeping, lifecycle, sdnotify
from watcher.runtime.budget import HostBudget, PollBudget
from watcher.runtime.feedpump import FeedPump
from watcher.runtime.leases import LeaseKeeper, SoleHolder, make_leases
from watcher.runtime.lifecycle import RootTasks
from watcher.runtime.metrics import Metrics
from watcher.runtime.ops import OpsState
from watcher.runtime.peers import PeerCommits
from watcher.runtime.poller import (
    ClusterWatch,
    TargetHealth,
    WatchContext,
    WorkflowWatch,
    delay_cap,
)
from watcher.runtime.projects import ProjectDiscovery
from watcher.runtime.registry import KeyKind, Registry, WatchKey
from watcher.runtime.scheduler import PollScheduler
from watcher.runtime.selfwatch import SelfAlerts, run_heartbeat, run_self_alerts
from watcher.runtime.watchdog import Watchdog
from watcher.runtime.wiring import CloudClients, NotifyPlan, notify_plan, target_ref
from watcher.store import STORE_FILE as STORE_FILE  # noqa: PLC0414 - re-exported for callers
from watcher.store import default_replica_id, open_store

log = structlog.get_logger(__name__)
FIRST_SHARE_WAIT_S = 5.0  # HA start: how long start() waits for its first leases' state


@dataclass
class _Parts:
    """What ``start()`` acquires; None before it (no attribute is created later)."""

    store: Store
    session: aiohttp.ClientSession
    budget: HostBudget
    clients: CloudClients
    notify: NotifyPlan
    ops: OpsState
    sender: AppriseSender
    dispatcher: Dispatcher
    ctx: WatchContext


class App:
    """Everything the `run` command runs; also embedded by `demo` and the tests."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        extra_urls: Sequence[str] = (),
        registry: CollectorRegistry | None = None,
        reload_settings: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.extra_urls = tuple(extra_urls)
        self.registry = registry or CollectorRegistry()  # Prometheus, injected (client_python)
        self.metrics = Metrics(self.registry)
        self.feed = EventFeed()
        self.feed_pump = FeedPump(self.feed)
        self.scheduler = PollScheduler()
        self.scheduler.on_lateness = self.metrics.schedule_lateness
        self.scheduler.job_info = self._job_info
        self._budget_since: dict[str, datetime] = {}  # lane -> start of its exceeded episode
        self._targets_added = False  # /readyz waits for it: no jobs yet is not "on schedule"
        self.reload_settings = reload_settings
        self.watching: Registry[WorkflowWatch, ClusterWatch, TargetHealth] = Registry()
        self.projects: dict[str, ProjectDiscovery] = {}  # project targets, by name
        self.http: HttpServer | None = None
        self.stopping = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.root_tasks = RootTasks()
        self.self_alerts = SelfAlerts()
        self.watchdog = Watchdog(
            scheduler=self.scheduler,
            clock=self.clock,
            metrics=self.metrics,
            on_alert=self._raise_self_alert,
            status=self._status_line,
            run_limit_s=max(300.0, 10 * settings.cloud.timeout_s),
        )
        self._parts: _Parts | None = None
        # HA (PostgreSQL): which targets this replica polls; alone, it holds them all.
        self.leases: LeaseKeeper | SoleHolder = SoleHolder()
        self._dispatcher_stop = asyncio.Event()  # stops only the outbox worker
        self._self_alert_wake = asyncio.Event()
        self._grace_s = 10.0
        self._stack = contextlib.AsyncExitStack()

    # -- the parts (set once by start) -----------------------------------------------------

    @property
    def parts(self) -> _Parts:
        if self._parts is None:
            raise RuntimeError("the app is not started")
        return self._parts

    @property
    def store(self) -> Store:
        return self.parts.store

    @property
    def ops(self) -> OpsState:
        return self.parts.ops

    @property
    def dispatcher(self) -> Dispatcher:
        return self.parts.dispatcher

    @property
    def watches(self) -> dict[str, WorkflowWatch]:
        """Live workflow watches by the key the store and the API show."""
        return {str(k): w for k, w in self.watching.watches.items()}

    @property
    def discoveries(self) -> dict[str, ClusterWatch]:
        """Each cluster target's one polling job, by target name."""
        return self.watching.discoveries

    @property
    def store_health(self) -> selfhealth.StoreHealth:
        return self.watchdog.store_health

    @property
    def run_limit_s(self) -> float:
        return self.watchdog.run_limit_s

    @run_limit_s.setter
    def run_limit_s(self, value: float) -> None:
        self.watchdog.run_limit_s = value

    @property
    def overdue_limit_s(self) -> float:
        return self.watchdog.overdue_limit_s

    @overdue_limit_s.setter
    def overdue_limit_s(self, value: float) -> None:
        self.watchdog.overdue_limit_s = value

    # -- startup -----------------------------------------------------------------------

    async def start(self) -> None:
        """Acquire every part in order; on a failure, release what was acquired, re-raise."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        settings, stack = self.settings, self._stack
        phase = self._phase
        self.watchdog.tick = time.monotonic()
        store = await open_store(settings, self.clock)
        stack.push_async_callback(phase, "store", 10.0, store.close)
        self.watchdog.store_ok = True
        # -- HA: leases (runtime/leases.py); SoleHolder unless the store is shared ----------
        self.leases = make_leases(
            store,
            replica_id=settings.ha.replica_id or default_replica_id(),
            lease_s=settings.ha.lease_s,
            keys=lambda: list(self.watching.healths),
            on_acquired=self._acquired,
            on_lost=self._released,
        )
        await self.feed_pump.start_after_tail(store)
        session = make_session(
            ca_file=settings.cloud.ca_file,
            timeout=aiohttp.ClientTimeout(
                total=settings.cloud.timeout_s, sock_connect=min(5.0, settings.cloud.timeout_s)
            ),
        )
        stack.push_async_callback(phase, "session", 1.0, session.close)
        budget = HostBudget(rate=settings.polling.requests_per_second, burst=settings.polling.burst)
        self.scheduler.use_budget(
            PollBudget(budget.rate, budget.burst, on_episode=self._budget_episode)
        )
        self.metrics.watch_stretch(self._stretch)
        plan = notify_plan(settings, self.extra_urls)
        await self._follow_url_keys(store, plan)
        ops = OpsState(store, self.clock, on_count=self.metrics.set_silences_active)
        ops.config_silences = list(plan.silences)
        await ops.refresh()
        sender = AppriseSender(plan.urls, storage_path=Path(settings.state_dir) / "apprise")
        stack.push_async_callback(phase, "sender", 1.0, lambda: self._close_sender(sender))
        stack.push_async_callback(phase, "self-alerts", 1.0, self._record_self_alerts)
        parts = self._parts = _Parts(
            store=store,
            session=session,
            budget=budget,
            clients=self._make_clients(settings, session, budget),
            notify=plan,
            ops=ops,
            sender=sender,
            dispatcher=self._make_dispatcher(store, sender, plan),
            ctx=self._make_context(settings, store, ops, plan),
        )
        self._spawn("dispatcher", parts.dispatcher.run(self._dispatcher_stop), drain=True)
        self._spawn("feed", self.feed_pump.run(store))
        self._spawn("silences", ops.run())
        self._spawn(
            "selfalerts",
            run_self_alerts(
                self.self_alerts,
                self._self_alert_wake,
                store=store,
                store_failing=lambda: self.watchdog.store_health.failing,
                on_stored=self._committed,
                sender=lambda: self.parts.sender,
                render=lambda: self.parts.notify.render_for_urls(),  # noqa: PLW0108 - late: reload swaps notify
                period_s=lambda: self.watchdog.self_check_s,
            ),
        )
        self._spawn(
            "heartbeat",
            run_heartbeat(
                lambda: self.settings.heartbeat,
                withheld_reason=self._heartbeat_withheld,
                status=lambda: f"ok: {self._status_line()}",
                on_sent=self.metrics.heartbeat_sent,
            ),
        )
        if settings.http.enabled:
            token = settings.http.token.get_secret_value() if settings.http.token else None
            app = build_app(
                store=store,
                feed=self.feed,
                status=self,
                metrics_registry=self.registry,
                token=token,
                metrics=self.metrics,
                clock=self.clock,
                ops=ops,
            )
            self.http = await start_http(app, settings.http.host, settings.http.port)
            http = self.http
            stack.callback(self.feed.close)
            stack.push_async_callback(phase, "http", 3.0, http.stop)
            log.info("http.listening", url=http.url)
        if isinstance(self.leases, LeaseKeeper):  # HA: after the polls stop, hand over
            stack.push_async_callback(phase, "leases", 2.0, self.leases.release_all)
        self.scheduler.start()
        stack.push_async_callback(phase, "polls", None, self._stop_scheduler)
        self.metrics.set_scheduler_up(True)
        await self._add_targets(settings.targets)
        self._targets_added = True
        if isinstance(self.leases, LeaseKeeper):  # HA: take a share, then keep it
            await self._start_ha(self.leases, store)
        self._spawn("watchdog", self.watchdog.run(store))
        self._spawn("housekeeping", housekeeping.run(store, self.clock, self._retention))
        sdnotify.ready(status=self._status_line())
        log.info("daemon.started", targets=len(settings.targets), urls=len(plan.urls))

    def _spawn(self, name: str, coro: Coroutine[Any, Any, Any], *, drain: bool = False) -> None:
        """Start a named root task; its stop is pushed as a shutdown phase (reverse order)."""
        self.root_tasks.spawn(name, coro)
        stop = self._stack.push_async_callback
        stop(self._phase, f"task {name}", 1.0, lambda: self.root_tasks.cancel(name))
        if drain:  # the outbox worker: let sends in flight finish (bounded), then cancel
            stop(self._phase, "deliveries", None, self._drain)

    async def _phase(self, name: str, timeout_s: float | None, step: Callable[[], Any]) -> None:
        await lifecycle.phase(name, self._grace_s / 2 if timeout_s is None else timeout_s, step)

    def _make_clients(
        self, settings: Settings, session: aiohttp.ClientSession, budget: HostBudget
    ) -> CloudClients:
        return CloudClients(
            settings, session, limiter=budget, on_response=self.metrics.api_response
        )

    def _make_dispatcher(self, store: Store, sender: AppriseSender, plan: NotifyPlan) -> Dispatcher:
        n = self.settings.notify
        return Dispatcher(
            store=store,
            sender=sender,
            render=plan.render_for_urls(),
            clock=self.clock,
            retry_base_s=n.retry_base_s,
            retry_cap_s=n.retry_cap_s,
            max_age_s=n.max_age.total_seconds(),
            stuck_after_s=sender.stuck_after_s,
            on_result=lambda url, ok, _s: self.metrics.delivery_finished(
                url, "sent" if ok else "failed"
            ),
            on_uncertain=self.metrics.delivery_maybe_delivered,
        )

    def _make_context(
        self, settings: Settings, store: Store, ops: OpsState, plan: NotifyPlan
    ) -> WatchContext:
        ctx = WatchContext(
            store=store,
            plan=ops.planner(plan.urls, plan.routes),
            policy=settings.policy.to_policy(),
            poll=settings.polling.to_poll_policy(),
            clock=self.clock,
            on_committed=self._committed,
            on_polled=self._polled,
            unreachable_after=settings.polling.unreachable_after,
            max_backoff_s=settings.polling.max_backoff_s,
            ops=ops,
            holds=self.leases.holds,
            fence=self.leases.fence,
            on_lease_lost=self.leases.lost,
            not_held_s=settings.ha.lease_s,
        )
        self.scheduler.max_delay_s = delay_cap(ctx)  # no job waits longer, whatever it says
        # HA: the job of a target held elsewhere is parked, not woken every lease_s to look
        # (at 10,000 targets over 3 replicas: 220 idle runs a second each): taking its lease
        # reschedules it (``_first_polls``).
        ctx.not_held_s = delay_cap(ctx)
        self.scheduler.first_interval_s = ctx.poll.idle_s  # a job's demand until it first ran
        return ctx

    # -- targets -----------------------------------------------------------------------

    async def _health_for(self, ref: TargetRef) -> TargetHealth:
        healths = self.watching.healths
        existing = healths.get(ref.name)
        if existing is not None and existing.target == ref:
            return existing
        state = await self.store.load_health(ref.name) or health.TargetHealth()
        healths[ref.name] = TargetHealth(ref, state)
        return healths[ref.name]

    async def _add_targets(self, targets: Sequence[Target]) -> None:
        states = await self.store.load_all_states()
        total = max(1, len(targets))
        ctx = self.parts.ctx
        # Spread first polls so N targets never hit the API in one burst, but keep the
        # window short so the first poll comes within a second of start.
        window = min(ctx.poll.active_s, total / self.settings.polling.requests_per_second)
        for i, target in enumerate(targets):
            first = window * i / total
            ref = target_ref(target)
            if target.kind == "project":
                await self._add_project(target, states, first)
                continue
            if target.kind == "workflow" and target.workflow_id:
                self._watch(
                    ref,
                    target.workflow_id,
                    await self._health_for(ref),
                    self.parts.clients.for_target(target),
                    target.display_name,
                    states,
                    first,
                )
                continue
            await self._add_cluster(ref, target.display_name, states, first)

    async def _add_project(
        self, target: Target, states: Mapping[str, WatchState], first_delay: float
    ) -> None:
        """A project target: one ListClusters job; each selected cluster is a cluster target
        (``_add_cluster``), dropped again by ``_remove_target`` (watcher.runtime.projects)."""
        ref = target_ref(target)
        rate = self.settings.polling.requests_per_second

        async def add(cluster: TargetRef, display: str | None, cluster_name: str) -> None:
            # A first listing of many clusters: spread their first polls like _add_targets.
            spread = min(self.parts.ctx.poll.active_s, len(project.clusters) / rate)
            await self._add_cluster(cluster, display, states, spread, cluster_name=cluster_name)

        project = ProjectDiscovery(
            client=self.parts.clients.for_target(ref),
            target=ref,
            health=await self._health_for(ref),
            selection=target.to_selection(),
            add=add,
            remove=self._remove_target,
            display_name=target.display_name,
            covered_by=self._configured_cluster_target,
        )
        self.projects[ref.name] = project
        self.scheduler.add(project.key, self._job(project), first_delay=first_delay)

    def _configured_cluster_target(self, cluster: TargetRef) -> str | None:
        """The configured cluster target watching this cluster, if any (it wins over a
        project target's derived one: see watcher.runtime.projects)."""
        return next(
            (
                t.name
                for t in self.settings.targets
                if t.kind == "cluster"
                and (t.region, t.project_id, t.cluster_id, t.api)
                == (cluster.region, cluster.project_id, cluster.cluster_id, cluster.api)
            ),
            None,
        )

    async def _add_cluster(
        self,
        ref: TargetRef,
        display: str | None,
        states: Mapping[str, WatchState],
        first_delay: float,
        *,
        cluster_name: str | None = None,
    ) -> None:
        """Poll one cluster: ONE job (``ClusterWatch``) whose one listing per run answers
        for all of its workflows. A configured cluster target, or a cluster a project
        target discovered (then ``ref.name`` is "project/cluster"). ``states`` are the
        stored states (``Store.load_all_states``): the cluster's workflows that had not
        ended are watched again. Adding a name again replaces it (a changed target).
        ``cluster_name``: the name a project's listing gave (no show call for it then).
        """
        if ref.name in self.watching.discoveries:
            self._remove_target(ref.name)
        cluster = ClusterWatch(
            client=self.parts.clients.for_target(ref),
            target=ref,
            health=await self._health_for(ref),
            display_name=display,
            console_template=self.settings.notify.console_url or None,
            cluster_name=cluster_name,
            watching_since=self.clock.now(),
        )
        # Hooks check that the cluster is still the one watched: a job still running when
        # its target was removed (a reload) must not index workflows again.
        cluster.on_watch = lambda watch: self._adopted(cluster, watch)
        cluster.on_applied = lambda watch, delay: self._applied(cluster, watch, delay)
        self.watching.discoveries[ref.name] = cluster  # first: restore calls the hooks
        await cluster.restore(self.store, states)
        poll = self.parts.ctx.poll
        # A cluster with nothing live is listed every discovery_s: its demand until it ran.
        interval = min(poll.idle_s, poll.discovery_s) if cluster.live else poll.discovery_s
        self.scheduler.add(
            cluster.key, self._job(cluster), first_delay=first_delay, first_interval=interval
        )

    def _adopted(self, cluster: ClusterWatch, watch: WorkflowWatch) -> None:
        if self.watching.discoveries.get(cluster.target.name) is cluster:
            self.watching.add(watch.watch_key, watch)

    def _applied(self, cluster: ClusterWatch, watch: WorkflowWatch, delay: float | None) -> None:
        """A workflow under a cluster watch was diffed: its gauges; None: it ended."""
        if self.watching.discoveries.get(cluster.target.name) is not cluster:
            return
        self._update_gauges(watch)
        if delay is None:
            self.watching.finish(watch.watch_key)

    def _watch(
        self,
        ref: TargetRef,
        uid: str,
        target_health: TargetHealth,
        client: CloudSource,
        display: str | None,
        states: Mapping[str, WatchState],
        first_delay: float,
    ) -> None:
        """An explicit workflow target: a job of its own that shows its one workflow."""
        key = WatchKey.workflow(ref.name, uid)
        watch = WorkflowWatch(
            client=client,
            target=ref,
            workflow_id=uid,
            health=target_health,
            display_name=display,
            state=states.get(str(key)),
            console_template=self.settings.notify.console_url or None,
        )
        self.watching.add(key, watch)
        self.scheduler.add(watch.key, self._job(watch), first_delay=first_delay)

    def _job(self, watch: WorkflowWatch | ClusterWatch | ProjectDiscovery) -> Callable[[], Any]:
        async def run() -> float | None:
            delay = await watch.poll(self.parts.ctx)
            if isinstance(watch, WorkflowWatch):
                self._update_gauges(watch)
                if delay is None:
                    self._finish(watch)
            return delay

        return run

    def _finish(self, watch: WorkflowWatch) -> None:
        self.watching.finish(watch.watch_key)
        if watch.target.name not in self.watching.discoveries:  # nothing left to poll
            self.metrics.forget_target(watch.target.name)

    def _remove_target(self, name: str) -> None:
        project = self.projects.pop(name, None)
        if project is not None:  # its derived cluster targets go with it
            self.scheduler.remove(project.key)
            project.remove_all()
        live, discovery = self.watching.remove_target(name)
        for key, watch in live:
            self.scheduler.remove(str(key))
            self.metrics.forget_workflow(name, watch.workflow_id)
        if discovery is not None:
            self.scheduler.remove(discovery.key)
        self.metrics.forget_target(name)

    # -- HA: leases and other replicas' commits (PostgreSQL only) -----------------------

    async def _start_ha(self, keeper: LeaseKeeper, store: Store) -> None:
        """Take a first share before start() returns (polls of targets not yet held are
        skipped; their state loads beside, see ``_acquired``), then keep it, and follow the
        other replicas' commits."""
        await keeper.round(wait=False)
        # The first share is pollable when start() returns, as on SQLite (a caller that
        # polls at once must not find its targets still loading), but a slow preparation
        # of thousands of targets never holds up the start for long: it goes on beside.
        await keeper.settled(timeout_s=FIRST_SHARE_WAIT_S)
        peers = PeerCommits(store, wake=self._peer_committed, holds=keeper.holds, adopt=self._adopt)
        self._spawn("leases", keeper.run(first_delay_s=keeper.period_s))
        self._spawn("peers", peers.run())
        self._spawn("listen", store.listen(peers.heard))

    def _peer_committed(self) -> None:
        if self._parts is not None:
            self._parts.dispatcher.wake()
        self.feed_pump.wake()

    async def _acquired(self, names: list[str]) -> None:
        """A takeover: reload each target's states, known workflows and health from the
        store (never diff against what this replica saw before another one polled it),
        resume its unfinished workflows, and poll it soon (``_first_polls``).

        The leases are held meanwhile but not yet polled (``LeaseKeeper.holds``): a run
        due meanwhile is parked for the lease time. So the jobs' next runs are read at the
        end, with no await between that and the keeper's ``holds`` turning true: a run
        parked while a later target was still loading is moved too (read per target, it
        was not, and that cluster's first listing came ``lease_s`` late).
        """
        store = self.store
        states = await store.load_all_states()
        by_target: dict[str, list[WorkflowWatch]] = {}
        for key, watch in self.watching.watches.items():  # once, not once per name
            by_target.setdefault(key.target, []).append(watch)
        jobs: list[ClusterWatch | WorkflowWatch] = []
        for name in names:
            target_health = self.watching.healths.get(name)
            if target_health is None:
                continue
            target_health.state = await store.load_health(name) or health.TargetHealth()
            for watch in by_target.get(name, ()):
                watch.adopt(states.get(watch.key))
            cluster = self.watching.discoveries.get(name)
            if cluster is not None:  # its known ids, and holders for unfinished workflows
                await cluster.restore(store, states)
                jobs.append(cluster)
            else:  # a cluster's workflows have no job of their own
                jobs += by_target.get(name, ())
        self._first_polls([(job.key, job.next_poll_at) for job in jobs])
        # A dead replica's delivery claims lapse with its leases: look at the outbox now.
        self._peer_committed()

    def _first_polls(self, jobs: Sequence[tuple[str, datetime | None]]) -> None:
        """Poll newly held targets over a window the request budget can carry, never at
        once: 1,000 acquired targets polled together starved the lease renewals.

        A job that never ran keeps its first run (``_add_targets`` spread it), and a job
        already due sooner than its slot keeps that: only jobs parked while another
        replica held them (``run_job``'s ``not_held_s``, the longest delay) are moved
        earlier.
        """
        parked = [job for job, next_at in jobs if next_at is not None]
        if not parked:
            return
        rate = self.settings.polling.requests_per_second
        window = min(self.parts.ctx.poll.active_s, len(parked) / rate)
        now = self.clock.now()
        by_job = dict(jobs)
        for i, job in enumerate(parked):
            slot = window * i / len(parked)
            next_at = by_job[job]
            if next_at is not None and next_at <= now + timedelta(seconds=slot):
                continue  # due sooner anyway
            self.scheduler.run_soon(job, slot)

    async def _released(self, names: list[str]) -> None:
        """A lease lost or given back: the holder exports a workflow's gauges, so this
        replica drops them (summed over replicas, /metrics must count each once)."""
        lost = set(names)
        for key, watch in self.watching.watches.items():
            if key.target in lost:
                self.metrics.forget_workflow(key.target, watch.workflow_id)

    def _adopt(self, text: str, state: WatchState | None) -> None:
        """Show a workflow another replica polls as that replica committed it."""
        key = WatchKey.decode(text)
        if key is None or key.kind is not KeyKind.WORKFLOW or state is None:
            return
        watch = self.watching.watches.get(key) or self.watching.finished.get(key)
        cluster = self.watching.discoveries.get(key.target)
        if watch is None:
            if cluster is None:
                return  # not a target of this replica's configuration (or long finished)
            watch = cluster.hold(key.workflow_id, state)  # a holder, no job
        watch.adopt(state)
        if state.workflow.phase in TERMINAL_PHASES and key in self.watching.watches:
            if cluster is not None:  # its holder gives it the final look
                cluster.drop(key.workflow_id)
                self.watching.finish(key)
            else:
                self.scheduler.remove(text)
                self._finish(watch)

    def _display(self, name: str) -> str | None:
        return next((t.display_name for t in self.settings.targets if t.name == name), None)

    # -- commits, metrics, self-alerts -----------------------------------------------------

    def _committed(self, events: list[Event]) -> None:
        for event in events:
            self.metrics.event_emitted(event.kind, str(event.severity))
        if self._parts is not None:
            self._parts.dispatcher.wake()
        self.feed_pump.wake()

    def _polled(self, target: str, result: PollOutcome, seconds: float) -> None:
        self.metrics.poll_finished(target, result, seconds)

    def _update_gauges(self, watch: WorkflowWatch) -> None:
        if not self.leases.holds(watch.target.name):
            return  # HA: the target's holder exports them (see ``_released``)
        summary = watch.summary(self.clock.now())
        if summary is None:
            return
        self.metrics.set_workflow(
            watch.target.name,
            watch.workflow_id,
            summary["phase"] or "unknown",
            {p["task_type"]: p["status"] or "None" for p in summary["points"]},
            summary["precheck_expires_in_s"],
            state=summary["state"],
        )

    # -- the request budget (issue 12.2) ---------------------------------------------------

    def _job_info(self, job_id: str) -> tuple[str | None, bool]:
        """The scheduler's question about a job: its lane (the API host: one per region;
        None while another replica holds the target, so it sends nothing) and whether it
        polls an active workflow."""
        key = WatchKey.decode(job_id)
        if key is None:
            return "", False
        if self._parts is not None and not self._parts.ctx.holds(key.target):
            return None, False
        watch = self.watching.watches.get(key)
        if watch is not None:
            return watch.target.region, watch.is_active()
        cluster = self.watching.discoveries.get(key.target)
        if cluster is None:
            return "", False
        # One listing answers for the whole cluster: active when any live workflow is.
        return cluster.target.region, cluster.priority() is Priority.ACTIVE

    def _stretch(self) -> tuple[float, float]:
        budget = self.scheduler.budget
        stretch = budget.stretch() if budget is not None else None
        return (stretch.active, stretch.idle) if stretch is not None else (1.0, 1.0)

    def _budget_episode(self, lane: str, exceeded: bool, demanded: float, allowed: float) -> None:
        """Demand crossed the request budget (or fell back): say it once per episode."""
        now = self.clock.now()
        host = socket.gethostname()
        if exceeded:
            self._budget_since[lane] = now
            log.warning(
                "watcher.budget_exceeded",
                lane=lane,
                demanded_rps=round(demanded, 2),
                allowed_rps=allowed,
            )
            self._raise_self_alert(selfhealth.budget_exceeded(lane, demanded, allowed, now, host))
            return
        since = self._budget_since.pop(lane, now)
        log.info(
            "watcher.budget_recovered",
            lane=lane,
            demanded_rps=round(demanded, 2),
            allowed_rps=allowed,
        )
        self._raise_self_alert(
            selfhealth.budget_recovered(lane, demanded, allowed, since, now, host)
        )

    def _raise_self_alert(self, event: Event) -> None:
        """Hold an alert about the watcher itself; the self-alert task stores or sends it."""
        self.metrics.event_emitted(event.kind, str(event.severity))
        urls = [p.url_key for p in self.parts.notify.plan([event], self.clock.now())]
        self.self_alerts.hold(event, urls)
        self._self_alert_wake.set()

    async def _record_self_alerts(self) -> None:
        """Shutdown: keep held self-alerts in `events` when the store still commits."""
        if len(self.self_alerts) and self._parts is not None and not self.store_health.failing:
            await self.self_alerts.record(self._parts.store)

    def _heartbeat_withheld(self) -> str | None:
        healthy, why = self.healthy()
        _, reasons = self.ready()
        return "; ".join(([] if healthy else [why]) + reasons) or None

    def _status_line(self) -> str:
        return f"watching {len(self.settings.targets)} targets"

    def _retention(self) -> timedelta:
        return self.settings.retention  # re-read: a reload may change it

    async def prune(self) -> int:
        """Run housekeeping now (tests, operators)."""
        return await housekeeping.prune(self.store, self.clock, self.settings.retention)

    # -- StatusSource (HTTP) --------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        """Liveness: the scheduler runs, starts due polls, no poll hangs, the checks tick."""
        return self.watchdog.healthy()

    def ready(self) -> tuple[bool, list[str]]:
        """Readiness: the store commits, some target answers, every job polled once or
        scheduled within its (stretched) interval."""
        reasons = []
        if not self._targets_added:
            reasons.append("starting: the targets' poll jobs are not scheduled yet")
        if self.store_health.failing:
            reasons.append(f"store cannot commit: {self.store_health.reason}")
        elif not self.watchdog.store_ok:
            reasons.append("store is not reachable")
        if (lease_problem := self.leases.problem()) is not None:
            reasons.append(lease_problem)
        healths = list(self.watching.healths.values())
        if healths and all(h.failures > 0 for h in healths):
            kinds = sorted({h.state.last_error_kind or "error" for h in healths})
            reasons.append(f"every target is failing ({len(healths)} targets; {', '.join(kinds)})")
        behind = self.scheduler.behind_schedule()
        if behind:
            reasons.append(f"{behind} jobs neither polled once nor scheduled within their interval")
        return not reasons, reasons

    def workflows(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        acks = self.ops.workflow_acks()
        return [
            w.view(now) | {"ack": ack.to_json() if (ack := acks.get(w.key)) else None}
            for w in self.watching.shown()
        ]

    def targets(self) -> list[dict[str, Any]]:
        """Each target's health and last error (a failing discovery has no workflow card)."""
        out = []
        for name, target_health in self.watching.healths.items():
            discovery = self.watching.discoveries.get(name) or self.projects.get(name)
            out.append(
                {
                    **target_health.view(),
                    "discovery_error": discovery.last_error if discovery else None,
                }
            )
        return out

    # -- control ---------------------------------------------------------------------------

    def poll_all_now(self) -> None:
        """Run every job as soon as possible (demo, tests, `kill -USR1`)."""
        for job_id in self.scheduler.job_ids:
            self.scheduler.run_soon(job_id)

    def request_reload(self) -> None:
        self.reload_requested.set()

    async def reload(self, new: Settings) -> None:
        """Apply a new, already validated configuration without losing state."""
        sdnotify.reloading()
        old, parts = self.settings, self.parts
        try:
            plan = notify_plan(new, self.extra_urls)
            sender = AppriseSender(plan.urls, storage_path=Path(new.state_dir) / "apprise")
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload.rejected", problem=problem)
            sdnotify.ready(status="reload rejected; running the previous configuration")
            return
        try:
            await self._follow_url_keys(parts.store, plan, parts.dispatcher)
        except Exception as exc:
            log.error(
                "reload.rejected",
                problem="pending deliveries could not be moved to the URLs' new keys",
                error=type(exc).__name__,
            )
            sender.close()
            sdnotify.ready(status="reload rejected; running the previous configuration")
            return
        # No await from here to _swap_dispatcher: the outbox worker must not start a send
        # of a re-keyed queue with the old sender, which does not know the new keys.
        self.settings = new
        if new.cloud != old.cloud or new.credentials != old.credentials:
            parts.clients = self._make_clients(new, parts.session, parts.budget)
            for watch in self.watching.watches.values():
                watch.client = parts.clients.for_target(watch.target)
            for discovery in self.watching.discoveries.values():
                discovery.client = parts.clients.for_target(discovery.target)
            for project in self.projects.values():
                project.client = parts.clients.for_target(project.target)
        self._swap_dispatcher(sender, plan)
        parts.notify = plan
        parts.ops.config_silences = list(plan.silences)
        await parts.ops.refresh()
        parts.ctx = self._make_context(new, parts.store, parts.ops, plan)
        old_targets = {t.name: t for t in old.targets}
        new_targets = {t.name: t for t in new.targets}
        for name, target in old_targets.items():
            if new_targets.get(name) != target:
                self._remove_target(name)
        added = [t for name, t in new_targets.items() if old_targets.get(name) != t]
        await self._add_targets(added)
        log.info("reload.applied", targets=len(new.targets), added=len(added), urls=len(plan.urls))
        sdnotify.ready(status=self._status_line())

    async def _follow_url_keys(
        self, store: Store, plan: NotifyPlan, dispatcher: Dispatcher | None = None
    ) -> None:
        """Move pending deliveries of URLs whose key changed (named, renamed, reordered,
        removed: ``watcher.notify.url.follow_keys``) before a sender with the new keys
        takes over: at start, against the keys the store recorded before the restart, and
        at a reload (``dispatcher``: the running one, paused on those keys meanwhile).
        Left under their old key, deliveries would go to whichever URL has that key now.
        A store failure raises: the start fails, a reload is rejected.
        """
        recorded = await store.load_url_keys()
        salt = recorded.salt if recorded is not None else secrets.token_hex(16)
        current = url_fingerprints(plan.urls, salt)
        moves, record = follow_keys(recorded.fingerprints if recorded else current, current)
        keys = {*moves, *moves.values()}
        with dispatcher.paused(keys) if dispatcher is not None else contextlib.nullcontext():
            moved = await store.rekey_deliveries(moves, UrlKeys(salt, record))
        if dispatcher is not None:
            dispatcher.rekey(moves)
        for old_key, count in sorted(moved.items()):
            new_key = moves[old_key]
            if new_key.startswith("gone-"):  # the URL was removed: nowhere to send them
                log.warning(
                    "notify.url_removed_with_pending",
                    url_key=old_key,
                    pending=count,
                    outcome="dead-lettered after delivery.max_age unless the URL returns",
                )
            else:
                log.info("notify.deliveries_rekeyed", old_key=old_key, new_key=new_key, moved=count)

    def _swap_dispatcher(self, sender: AppriseSender, plan: NotifyPlan) -> None:
        """Give the running outbox worker the new sender, templates and retry limits.

        The worker adopts the sends in flight instead of being replaced: they finish with
        the old sender, record their outcome and keep their URL busy until then. Stopping
        and draining the old worker instead (with a time limit, then a cancel) abandoned
        sends that apprise's thread was still posting; their deliveries stayed pending and
        the new worker sent them again, once per reload of a burst. The old sender is
        closed (its log filter removed) when the last of its sends has ended.
        """
        n = self.settings.notify
        parts = self.parts
        old_sender = parts.sender
        in_flight = parts.dispatcher.reconfigure(
            sender=sender,
            render=plan.render_for_urls(),
            retry_base_s=n.retry_base_s,
            retry_cap_s=n.retry_cap_s,
            max_age_s=n.max_age.total_seconds(),
            stuck_after_s=sender.stuck_after_s,
        )
        parts.sender = sender
        if not in_flight:
            old_sender.close()
            return
        remaining = len(in_flight)

        def one_done(_task: asyncio.Task[None]) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                old_sender.close()

        for task in in_flight:
            task.add_done_callback(one_done)

    async def reload_from_source(self) -> None:
        if self.reload_settings is None:
            log.warning("reload.unsupported")
            return
        try:
            new = self.reload_settings()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload.rejected", problem=problem)
            log.error("reload.kept_previous_config")
            return
        await self.reload(new)

    # -- shutdown --------------------------------------------------------------------------

    async def _close_sender(self, first: AppriseSender) -> None:
        """Close the current sender: the first one, or the one a reload swapped in."""
        (self._parts.sender if self._parts is not None else first).close()

    async def _stop_scheduler(self) -> None:
        if self._parts is not None:  # polls waiting for the budget have sent nothing: end them
            self._parts.budget.close()
        await self.scheduler.shutdown(timeout=self._grace_s / 2)

    async def _drain(self) -> None:
        await self.parts.dispatcher.drain(self._grace_s / 4)

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Bounded, ordered shutdown: polls, then servers, then deliveries, then the store.

        Releases exactly what ``start()`` acquired, in reverse; each step is a logged,
        time-bounded phase. Safe to call after a failed start, and twice.
        """
        started = time.monotonic()
        self._grace_s = grace_s
        sdnotify.stopping()
        log.info("daemon.stopping")
        self.stopping.set()
        self._dispatcher_stop.set()
        await self._stack.aclose()
        log.info("daemon.stopped", seconds=round(time.monotonic() - started, 2))

    async def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT; SIGHUP reloads (see ``lifecycle.serve``)."""
        await lifecycle.serve(self)
