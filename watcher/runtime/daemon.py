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
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from watcher.cloud.http import make_session
from watcher.config import Settings, Target
from watcher.core import engine, health
from watcher.core.errors import ConfigError
from watcher.core.events import Event, TargetRef
from watcher.core.models import TERMINAL_PHASES, Workflow
from watcher.core.ports import Clock, SystemClock
from watcher.delivery.dispatcher import Dispatcher
from watcher.http.server import HttpServer, build_app, start_http
from watcher.notify.sender import AppriseSender
from watcher.runtime import sdnotify
from watcher.runtime.budget import HostBudget
from watcher.runtime.feed import EventFeed
from watcher.runtime.metrics import Metrics
from watcher.runtime.scheduler import PollScheduler
from watcher.runtime.watch import (
    CloudSource,
    ClusterDiscovery,
    TargetHealth,
    WatchContext,
    WorkflowWatch,
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
        self._first_round: set[str] = set()
        self._feed_cursor = 0
        self._feed_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stack = contextlib.AsyncExitStack()

    # -- startup -----------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
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
        self.sender = AppriseSender(
            self.notify.urls, storage_path=Path(settings.state_dir) / "apprise"
        )
        self.dispatcher = self._make_dispatcher(self.sender, self.notify)
        self.ctx = self._make_context(settings, self.notify)
        self._spawn(self._run_dispatcher(), "dispatcher")
        self._spawn(self._pump_feed(), "feed")
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
            on_result=lambda url, ok, _s: self.metrics.delivery_finished(
                url, "sent" if ok else "failed"
            ),
        )

    def _make_context(self, settings: Settings, plan: NotifyPlan) -> WatchContext:
        return WatchContext(
            store=self.store,
            plan=plan.plan,
            policy=settings.policy.to_policy(),
            poll=settings.polling.to_poll_policy(),
            clock=self.clock,
            on_committed=self._committed,
            on_polled=self._polled,
            unreachable_after=settings.polling.unreachable_after,
            max_backoff_s=settings.polling.max_backoff_s,
        )

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    # -- targets -----------------------------------------------------------------------

    async def _health_for(self, ref: TargetRef) -> TargetHealth:
        existing = self.healths.get(ref.name)
        if existing is not None and existing.target == ref:
            return existing
        data = await self.store.load_kv(f"health/{ref.name}")
        state = health.TargetHealth.from_json(data) if data else health.TargetHealth()
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
            for key, data in states.items():  # resume watches that were running
                prefix = f"{ref.name}/"
                uid = key[len(prefix) :]
                if key.startswith(prefix) and not uid.startswith("_"):
                    state = engine.WatchState.from_json(data)
                    if state.workflow.phase not in TERMINAL_PHASES:
                        self._watch(
                            ref, uid, target_health, client, target.display_name, states, first
                        )
            self.scheduler.add(discovery.key, self._job(discovery), first_delay=first)

    def _spawner(
        self, ref: TargetRef, display: str | None, states: dict[str, dict[str, Any]]
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
        states: dict[str, dict[str, Any]],
        first_delay: float,
    ) -> None:
        key = f"{ref.name}/{uid}"
        data = states.get(key)
        watch = WorkflowWatch(
            client=client,
            target=ref,
            workflow_id=uid,
            health=target_health,
            display_name=display,
            state=engine.WatchState.from_json(data) if data else None,
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
        )

    async def _pump_feed(self) -> None:
        """Publish committed events to SSE subscribers in store order (with their seqs)."""
        while True:
            await self._feed_wake.wait()
            self._feed_wake.clear()
            while True:
                batch = await self.store.recent_events(after_seq=self._feed_cursor, limit=500)
                if not batch:
                    break
                self._feed_cursor = batch[-1].seq
                self.feed.publish(batch)

    async def _run_dispatcher(self) -> None:
        await self.dispatcher.run(self._dispatcher_stop)

    async def _watchdog(self) -> None:
        """Ping systemd only while the scheduler is healthy; refresh store and outbox gauges."""
        interval = sdnotify.watchdog_interval_s()
        period = min(5.0, interval / 2) if interval else 5.0
        while True:
            self._store_ok = await self.store.ping()
            stats = await self.store.outbox_stats(self.clock.now())
            self.metrics.set_outbox(stats["pending"], stats["oldest_pending_age_s"], stats["dead"])
            ok, _ = self.healthy()
            self.metrics.set_scheduler_up(ok)
            if ok:
                sdnotify.watchdog()
            await asyncio.sleep(period)

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
        if not self.scheduler.running:
            return False, "scheduler is not running"
        return True, "ok"

    def ready(self) -> tuple[bool, list[str]]:
        reasons = []
        if not self._store_ok:
            reasons.append("store is not reachable")
        pending = [k for k in self.scheduler.job_ids if k not in self._first_round]
        if pending:
            reasons.append(f"first poll pending for {len(pending)} jobs")
        return not reasons, reasons

    def workflows(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        watches = [*self.finished.values(), *self.watches.values()]
        return [s for w in watches if (s := w.summary(now)) is not None]

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
        # Swap the outbox worker: the old one finishes its in-flight sends, the new one
        # picks up every pending delivery from the store, none is lost.
        old_sender = self.sender
        self.dispatcher.wake()
        await self._swap_dispatcher(sender, plan)
        old_sender.close()
        self.notify = plan
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

    async def _swap_dispatcher(self, sender: AppriseSender, plan: NotifyPlan) -> None:
        old_task = next(t for t in self._tasks if t.get_name() == "dispatcher")
        self._tasks.remove(old_task)
        old_dispatcher = self.dispatcher
        # Stop the old loop, never cancel it: a cancel also cancels its in-flight sends while
        # apprise's thread still posts them, their deliveries stay pending, and the new
        # worker sent them a second time. Stopped, the loop leaves them for drain() to finish.
        self._dispatcher_stop.set()
        with contextlib.suppress(Exception):
            await old_task
        await old_dispatcher.drain(5.0)
        self._dispatcher_stop = asyncio.Event()
        self.sender = sender
        self.dispatcher = self._make_dispatcher(sender, plan)
        self._spawn(self._run_dispatcher(), "dispatcher")

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
