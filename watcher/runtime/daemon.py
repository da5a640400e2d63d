"""The daemon: the one composition root and its lifecycle.

Acquire in order (store, HTTP session, notification parts, dispatcher, HTTP server,
scheduler), release in reverse, each step of the shutdown bounded. Signals only set
events; the main coroutine does the work. SIGHUP reloads the configuration: a valid one is
applied without losing state or pending deliveries, an invalid one is logged and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import timedelta
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
from watcher.core.models import TERMINAL_PHASES, Workflow
from watcher.core.ports import Clock, CloudSource, SystemClock
from watcher.core.state import WatchState
from watcher.delivery.dispatcher import Dispatcher
from watcher.http.server import HttpServer, build_app, start_http
from watcher.notify.sender import AppriseSender
from watcher.runtime import sdnotify
from watcher.runtime.budget import HostBudget
from watcher.runtime.feed import EventFeed
from watcher.runtime.metrics import Metrics
from watcher.runtime.ops import OpsState
from watcher.runtime.scheduler import PollScheduler
from watcher.runtime.selfwatch import Heartbeat, SelfAlerts
from watcher.runtime.watch import (
    ClusterDiscovery,
    TargetHealth,
    WatchContext,
    WorkflowWatch,
    delay_cap,
)
from watcher.runtime.wiring import (
    CloudClients,
    NotifyPlan,
    notify_plan,
    target_ref,
)
from watcher.store import STORE_FILE as STORE_FILE  # noqa: PLC0414  (re-exported for oneshot)
from watcher.store import open_store

log = structlog.get_logger(__name__)

HOUSEKEEPING_S = 6 * 3600.0  # how often old deliveries and events are pruned
FINISHED_SHOWN = 100  # finished workflows kept in /api/v1/workflows and on the status page
SELF_CHECK_S = 5.0  # how often the store is probed and systemd's watchdog is pinged
STORE_RECOVER_AFTER = timedelta(seconds=30)  # good checks needed before store_recovered
SCHEDULER_OVERDUE_S = 120.0  # a due poll not started after this means the scheduler is wedged


class Daemon:
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
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.feed = EventFeed()
        self.scheduler = PollScheduler()
        self.scheduler.on_lateness = self.metrics.schedule_lateness
        self.reload_settings = reload_settings
        self.watches: dict[str, WorkflowWatch] = {}
        # Finished workflows stay visible (API, status page) until newer ones push them out.
        self.finished: OrderedDict[str, WorkflowWatch] = OrderedDict()
        self.discoveries: dict[str, ClusterDiscovery] = {}
        self.healths: dict[str, TargetHealth] = {}
        self.http: HttpServer | None = None
        self.stopping = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._dispatcher_stop = asyncio.Event()  # stops only the current outbox worker
        self._store_ok = False
        self.store_health = selfhealth.StoreHealth()
        self.self_alerts = SelfAlerts()
        self._self_alert_wake = asyncio.Event()
        # Liveness bounds; tests shorten them. A poll is a few HTTP calls, each bounded by
        # cloud.timeout_s, plus rate-limit waits: ten timeouts (5 min at least) is wedged.
        self.self_check_s = SELF_CHECK_S
        self.store_recover_after = STORE_RECOVER_AFTER
        self.overdue_limit_s = SCHEDULER_OVERDUE_S
        self.run_limit_s = max(300.0, 10 * settings.cloud.timeout_s)
        self._tick = time.monotonic()  # the self-check loop's liveness stamp
        self._first_round: set[str] = set()
        self._feed_cursor = 0
        self._feed_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stack = contextlib.AsyncExitStack()

    # -- startup -----------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        self._tick = time.monotonic()
        self.store = await open_store(settings, self.clock)
        self._stack.push_async_callback(self.store.close)
        self._store_ok = True
        tail = await self.store.recent_events(limit=1)
        self._feed_cursor = tail[-1].seq if tail else 0
        self.session: aiohttp.ClientSession = make_session(
            ca_file=settings.cloud.ca_file,
            timeout=aiohttp.ClientTimeout(
                total=settings.cloud.timeout_s,
                connect=min(5.0, settings.cloud.timeout_s),
                sock_read=settings.cloud.timeout_s,
            ),
        )
        self._stack.push_async_callback(self.session.close)
        self.budget = HostBudget(
            rate=settings.polling.requests_per_second, burst=settings.polling.burst
        )
        self.clients = self._make_clients(settings)
        self.notify = notify_plan(settings, self.extra_urls)
        self.ops = OpsState(self.store, self.clock, on_count=self.metrics.set_silences_active)
        self.ops.config_silences = list(self.notify.silences)
        await self.ops.refresh()
        self.sender = AppriseSender(
            self.notify.urls, storage_path=Path(settings.state_dir) / "apprise"
        )
        self.dispatcher = self._make_dispatcher(self.sender, self.notify)
        self.ctx = self._make_context(settings, self.notify)
        self._spawn(self._run_dispatcher(), "dispatcher")
        self._spawn(self._pump_feed(), "feed")
        self._spawn(self.ops.run(), "silences")
        self._spawn(self._self_alert_loop(), "selfalerts")
        self._spawn(self._heartbeat_loop(), "heartbeat")
        if settings.http.enabled:
            token = settings.http.token.get_secret_value() if settings.http.token else None
            app = build_app(
                store=self.store,
                feed=self.feed,
                status=self,
                metrics_registry=self.registry,
                token=token,
                metrics=self.metrics,
                clock=self.clock,
                ops=self.ops,
            )
            self.http = await start_http(app, settings.http.host, settings.http.port)
            log.info("http.listening", url=self.http.url)
        self.scheduler.start()
        self.metrics.set_scheduler_up(True)
        await self._add_targets(settings.targets)
        self._spawn(self._watchdog(), "watchdog")
        self._spawn(self._housekeeping(), "housekeeping")
        sdnotify.ready(status=f"watching {len(settings.targets)} targets")
        log.info("daemon.started", targets=len(settings.targets), urls=len(self.notify.urls))

    def _make_clients(self, settings: Settings) -> CloudClients:
        return CloudClients(
            settings, self.session, limiter=self.budget, on_response=self.metrics.api_response
        )

    def _make_dispatcher(self, sender: AppriseSender, plan: NotifyPlan) -> Dispatcher:
        n = self.settings.notify
        return Dispatcher(
            store=self.store,
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

    def _make_context(self, settings: Settings, plan: NotifyPlan) -> WatchContext:
        ctx = WatchContext(
            store=self.store,
            plan=self.ops.planner(plan.urls, plan.routes),
            policy=settings.policy.to_policy(),
            poll=settings.polling.to_poll_policy(),
            clock=self.clock,
            on_committed=self._committed,
            on_polled=self._polled,
            unreachable_after=settings.polling.unreachable_after,
            max_backoff_s=settings.polling.max_backoff_s,
            ops=self.ops,
        )
        self.scheduler.max_delay_s = delay_cap(ctx)  # no job waits longer, whatever it says
        return ctx

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    # -- targets -----------------------------------------------------------------------

    async def _health_for(self, ref: TargetRef) -> TargetHealth:
        existing = self.healths.get(ref.name)
        if existing is not None and existing.target == ref:
            return existing
        state = await self.store.load_health(ref.name) or health.TargetHealth()
        self.healths[ref.name] = TargetHealth(ref, state)
        return self.healths[ref.name]

    async def _add_targets(self, targets: Sequence[Target]) -> None:
        states = await self.store.load_all_states()
        total = max(1, len(targets))
        # Spread first polls so N targets never hit the API in one burst, but keep the
        # window short so the first poll comes within a second of start.
        window = min(self.ctx.poll.active_s, total / self.settings.polling.requests_per_second)
        for i, target in enumerate(targets):
            first = window * i / total
            ref = target_ref(target)
            target_health = await self._health_for(ref)
            client = self.clients.for_target(target)
            if target.kind == "workflow" and target.workflow_id:
                self._watch(
                    ref,
                    target.workflow_id,
                    target_health,
                    client,
                    target.display_name,
                    states,
                    first,
                )
                continue
            discovery = ClusterDiscovery(
                client=client,
                target=ref,
                health=target_health,
                spawn=self._spawner(ref, target.display_name, states),
            )
            await discovery.restore(self.store)
            self.discoveries[ref.name] = discovery
            for key, state in states.items():  # resume watches that were running
                prefix = f"{ref.name}/"
                uid = key[len(prefix) :]
                if (
                    key.startswith(prefix)
                    and not uid.startswith("_")
                    and state.workflow.phase not in TERMINAL_PHASES
                ):
                    self._watch(ref, uid, target_health, client, target.display_name, states, first)
            self.scheduler.add(discovery.key, self._job(discovery), first_delay=first)

    def _spawner(
        self, ref: TargetRef, display: str | None, states: dict[str, WatchState]
    ) -> Callable[[str, Workflow | None], None]:
        def spawn(uid: str, _listed: Workflow | None) -> None:
            key = f"{ref.name}/{uid}"
            if key in self.watches:
                return
            self._watch(
                ref, uid, self.healths[ref.name], self.clients.for_target(ref), display, states, 0.0
            )

        return spawn

    def _watch(
        self,
        ref: TargetRef,
        uid: str,
        target_health: TargetHealth,
        client: CloudSource,
        display: str | None,
        states: dict[str, WatchState],
        first_delay: float,
    ) -> None:
        key = f"{ref.name}/{uid}"

        watch = WorkflowWatch(
            client=client,
            target=ref,
            workflow_id=uid,
            health=target_health,
            display_name=display,
            state=states.get(key),
            console_template=self.settings.notify.console_url or None,
        )
        self.watches[key] = watch
        self.scheduler.add(key, self._job(watch), first_delay=first_delay)

    def _job(self, watch: WorkflowWatch | ClusterDiscovery) -> Callable[[], Any]:
        async def run() -> float | None:
            delay = await watch.poll(self.ctx)
            self._first_round.add(watch.key)
            if isinstance(watch, WorkflowWatch):
                self._update_gauges(watch)
                if delay is None:
                    self._finish(watch)
            return delay

        return run

    def _finish(self, watch: WorkflowWatch) -> None:
        self.watches.pop(watch.key, None)
        if watch.target.name not in self.discoveries:  # a workflow target: nothing left to poll
            self.metrics.forget_target(watch.target.name)
        self.finished[watch.key] = watch
        while len(self.finished) > FINISHED_SHOWN:
            self.finished.popitem(last=False)

    def _remove_target(self, name: str) -> None:
        for key in [k for k in self.finished if k.startswith(f"{name}/")]:
            del self.finished[key]
        for key in [k for k in self.watches if k.startswith(f"{name}/")]:
            watch = self.watches.pop(key)
            self.scheduler.remove(key)
            self.metrics.forget_workflow(name, watch.workflow_id)
        discovery = self.discoveries.pop(name, None)
        if discovery is not None:
            self.scheduler.remove(discovery.key)
        self.healths.pop(name, None)
        self.metrics.forget_target(name)

    # -- commits, feed, metrics ----------------------------------------------------------

    def _committed(self, events: list[Event]) -> None:
        for event in events:
            self.metrics.event_emitted(event.kind, str(event.severity))
        self.dispatcher.wake()
        self._feed_wake.set()

    def _polled(self, target: str, result: str, seconds: float) -> None:
        self.metrics.poll_finished(target, result, seconds)

    def _update_gauges(self, watch: WorkflowWatch) -> None:
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

    async def _pump_feed(self) -> None:
        """Publish committed events to SSE subscribers in store order (with their seqs)."""
        while True:
            await self._feed_wake.wait()
            self._feed_wake.clear()
            while True:
                batch = await self.store.recent_events(after_seq=self._feed_cursor, limit=100)
                if not batch:
                    break
                self._feed_cursor = batch[-1].seq
                self.feed.publish(batch)
                await asyncio.sleep(0)  # thousands of events: let polls run between batches

    async def _run_dispatcher(self) -> None:
        await self.dispatcher.run(self._dispatcher_stop)

    async def _watchdog(self) -> None:
        """Check the store, refresh gauges, and ping systemd only while healthy() holds.

        ``_tick`` is this loop's liveness stamp: healthy() fails when it goes stale, and the
        WATCHDOG=1 pings stop with it, so a wedged loop is restarted by systemd.
        """
        interval = sdnotify.watchdog_interval_s()
        while True:
            period = min(self.self_check_s, interval / 2) if interval else self.self_check_s
            self._tick = time.monotonic()
            await self._check_store()
            ok, reason = self.healthy()
            self.metrics.set_scheduler_up(ok)
            if ok:
                sdnotify.watchdog()
            else:
                log.error("daemon.unhealthy", reason=reason)
            await asyncio.sleep(period)

    async def _check_store(self) -> None:
        """Probe the store; turn an outage into one store_failed and one store_recovered."""
        try:
            problem = await self.store.self_check()
        except Exception as exc:  # the check itself failing is a store problem too
            problem = f"store self-check failed: {type(exc).__name__}"
        was_failing = self.store_health.failing
        events, self.store_health = selfhealth.observe(
            self.store_health,
            self.clock.now(),
            problem,
            recover_after=self.store_recover_after,
            host=socket.gethostname(),
        )
        self._store_ok = not self.store_health.failing
        if self.store_health.failing and not was_failing:
            log.error("store.failed", reason=self.store_health.reason)
            sdnotify.status(f"state store failing: {self.store_health.reason}")
        elif was_failing and not self.store_health.failing:
            log.info("store.recovered")
            sdnotify.status(f"watching {len(self.settings.targets)} targets")
        for event in events:
            self._raise_self_alert(event)
        if self._store_ok:
            try:
                stats = await self.store.outbox_stats(self.clock.now())
            except Exception as exc:  # any backend's error; self_check above reports it
                log.warning("store.stats_failed", error=type(exc).__name__)
            else:
                self.metrics.set_outbox(stats.pending, stats.oldest_pending_age_s, stats.dead)

    def _raise_self_alert(self, event: Event) -> None:
        """Hold an alert about the watcher itself; the self-alert loop stores or sends it."""
        self.metrics.event_emitted(event.kind, str(event.severity))
        urls = [p.url_key for p in self.notify.plan([event], self.clock.now())]
        self.self_alerts.hold(event, urls)
        self._self_alert_wake.set()

    async def _self_alert_loop(self) -> None:
        """Record held self-alerts once the store commits, else send them straight out."""
        while True:
            if len(self.self_alerts):
                if not self.store_health.failing:
                    stored = await self.self_alerts.record(self.store)
                    if stored:
                        self._committed(stored)
                await self.self_alerts.send_due(self.sender, self.notify.render_for_urls())
            due = self.self_alerts.next_due_in()
            wait = self.self_check_s if due is None else min(due, self.self_check_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._self_alert_wake.wait(), timeout=max(0.05, wait))
            self._self_alert_wake.clear()

    async def _heartbeat_loop(self) -> None:
        """The dead-man's switch: ping [heartbeat] url while healthy and ready, else stay quiet."""
        async with aiohttp.ClientSession() as session:
            withheld: str | None = None
            while True:
                conf = self.settings.heartbeat  # re-read: a reload may change it
                if conf.url is not None:
                    healthy, why = self.healthy()
                    _, reasons = self.ready()
                    reason = "; ".join(([] if healthy else [why]) + reasons) or None
                    if reason is None:
                        beat = Heartbeat(
                            conf.url.get_secret_value(),
                            method=conf.method,
                            timeout_s=conf.timeout_s,
                        )
                        await beat.beat(
                            session, f"ok: watching {len(self.settings.targets)} targets"
                        )
                    elif reason != withheld:
                        log.warning("heartbeat.withheld", reason=reason)
                    withheld = reason
                await asyncio.sleep(conf.interval_s)

    async def _housekeeping(self) -> None:
        while True:
            await self.prune()
            await asyncio.sleep(HOUSEKEEPING_S)

    async def prune(self) -> int:
        """Drop sent/dead deliveries and unreferenced events older than the retention, in
        small batches so polls and commits are never held up for long."""
        before = self.clock.now() - self.settings.retention
        total = 0
        while (gone := await self.store.prune(before)) > 0:
            total += gone
            await asyncio.sleep(0)
        if total:
            log.info("store.pruned", rows=total, before=before.isoformat())
        return total

    # -- StatusSource (HTTP) --------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        """Liveness: the scheduler runs, starts due polls, no poll hangs, the checks tick."""
        if not self.scheduler.running:
            return False, "scheduler is not running"
        stale = time.monotonic() - self._tick
        if stale > max(30.0, 3 * self.self_check_s):
            return False, f"self-check loop has not run for {stale:.0f} s"
        overdue = self.scheduler.overdue_s()
        if overdue > self.overdue_limit_s:
            return False, f"scheduler wedged: a due poll has waited {overdue:.0f} s to start"
        longest = self.scheduler.longest_run()
        if longest is not None and longest[1] > self.run_limit_s:
            return False, f"poll {longest[0]} wedged: running for {longest[1]:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, list[str]]:
        """Readiness: the store commits, some target answers, every job polled once."""
        reasons = []
        if self.store_health.failing:
            reasons.append(f"store cannot commit: {self.store_health.reason}")
        elif not self._store_ok:
            reasons.append("store is not reachable")
        healths = list(self.healths.values())
        if healths and all(h.failures > 0 for h in healths):
            kinds = sorted({h.state.last_error_kind or "error" for h in healths})
            reasons.append(f"every target is failing ({len(healths)} targets; {', '.join(kinds)})")
        pending = [k for k in self.scheduler.job_ids if k not in self._first_round]
        if pending:
            reasons.append(f"first poll pending for {len(pending)} jobs")
        return not reasons, reasons

    def workflows(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        watches = [*self.finished.values(), *self.watches.values()]
        acks = self.ops.workflow_acks()
        return [
            w.view(now) | {"ack": ack.to_json() if (ack := acks.get(w.key)) else None}
            for w in watches
        ]

    def targets(self) -> list[dict[str, Any]]:
        """Each target's health and last error (a failing discovery has no workflow card)."""
        out = []
        for name, target_health in self.healths.items():
            discovery = self.discoveries.get(name)
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
        self._reload_requested.set()

    async def reload(self, new: Settings) -> None:
        """Apply a new, already validated configuration without losing state."""
        sdnotify.reloading()
        old = self.settings
        try:
            plan = notify_plan(new, self.extra_urls)
            sender = AppriseSender(plan.urls, storage_path=Path(new.state_dir) / "apprise")
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload.rejected", problem=problem)
            sdnotify.ready(status="reload rejected; running the previous configuration")
            return
        self.settings = new
        if new.cloud != old.cloud or new.credentials != old.credentials:
            self.clients = self._make_clients(new)
            for watch in self.watches.values():
                watch.client = self.clients.for_target(watch.target)
            for discovery in self.discoveries.values():
                discovery.client = self.clients.for_target(discovery.target)
        self._swap_dispatcher(sender, plan)
        self.notify = plan
        self.ops.config_silences = list(plan.silences)
        await self.ops.refresh()
        self.ctx = self._make_context(new, plan)
        old_targets = {t.name: t for t in old.targets}
        new_targets = {t.name: t for t in new.targets}
        for name, target in old_targets.items():
            if new_targets.get(name) != target:
                self._remove_target(name)
        added = [t for name, t in new_targets.items() if old_targets.get(name) != t]
        await self._add_targets(added)
        log.info("reload.applied", targets=len(new.targets), added=len(added), urls=len(plan.urls))
        sdnotify.ready(status=f"watching {len(new.targets)} targets")

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
        old_sender = self.sender
        in_flight = self.dispatcher.reconfigure(
            sender=sender,
            render=plan.render_for_urls(),
            retry_base_s=n.retry_base_s,
            retry_cap_s=n.retry_cap_s,
            max_age_s=n.max_age.total_seconds(),
            stuck_after_s=sender.stuck_after_s,
        )
        self.sender = sender
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

    # -- shutdown --------------------------------------------------------------------------

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Bounded, ordered shutdown: polls, then deliveries, then servers and the store."""
        started = time.monotonic()
        sdnotify.stopping()
        log.info("daemon.stopping")
        self.stopping.set()
        self._dispatcher_stop.set()
        await self.scheduler.shutdown(timeout=grace_s / 2)
        # Parts may be missing when start() failed halfway (a URL apprise rejects, ...).
        dispatcher: Dispatcher | None = getattr(self, "dispatcher", None)
        if dispatcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(dispatcher.drain(grace_s / 4), grace_s / 4 + 1)
        if self.http is not None:
            await self.http.stop()
        self.feed.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if len(self.self_alerts) and hasattr(self, "store") and not self.store_health.failing:
            with contextlib.suppress(Exception):  # best effort: keep them in `events`
                await self.self_alerts.record(self.store)
        sender: AppriseSender | None = getattr(self, "sender", None)
        if sender is not None:
            sender.close()
        await self._stack.aclose()
        log.info("daemon.stopped", seconds=round(time.monotonic() - started, 2))

    async def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT; SIGHUP reloads. Signal handlers only set events."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        loop.add_signal_handler(signal.SIGUSR1, self.poll_all_now)
        try:
            await self.start()
            while not self.stopping.is_set():
                stop_wait = asyncio.create_task(self.stopping.wait())
                reload_wait = asyncio.create_task(self._reload_requested.wait())
                crashed = [t for t in self._tasks if t.done()]
                await asyncio.wait(
                    [stop_wait, reload_wait, *self._tasks], return_when=asyncio.FIRST_COMPLETED
                )
                stop_wait.cancel()
                reload_wait.cancel()
                if self.stopping.is_set():
                    break  # a task ending during shutdown is not a crash
                crashed = [t for t in self._tasks if t.done()]
                if crashed:
                    for task in crashed:
                        log.error(
                            "daemon.task_crashed",
                            task=task.get_name(),
                            error=repr(task.exception()) if not task.cancelled() else None,
                        )
                    raise RuntimeError("an internal task crashed")
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    await self._reload_from_source()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                loop.remove_signal_handler(sig)
            if hasattr(self, "store"):
                await self.stop()

    async def _reload_from_source(self) -> None:
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
