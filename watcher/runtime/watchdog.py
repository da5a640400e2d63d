"""The watchdog: the root task that checks the store and the scheduler, and pings systemd.

Why this module exists: liveness is one job. Every ``self_check_s`` it probes the store
(an outage becomes one ``watcher.store_failed`` and one ``watcher.store_recovered``,
through the pure ``core.selfhealth``), refreshes the outbox gauges, and pings systemd's
watchdog only while ``healthy()`` holds. ``tick`` is the loop's own liveness stamp:
``healthy()`` fails when it goes stale, the WATCHDOG=1 pings stop with it, and systemd
restarts a wedged process.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from watcher.core import selfhealth
from watcher.core.events import Event
from watcher.core.ports import Clock, OutboxStats
from watcher.runtime import sdnotify
from watcher.runtime.metrics import Metrics
from watcher.runtime.scheduler import PollScheduler

log = structlog.get_logger(__name__)

SELF_CHECK_S = 5.0  # how often the store is probed and systemd's watchdog is pinged
STORE_RECOVER_AFTER = timedelta(seconds=30)  # good checks needed before store_recovered
# A due poll not started after this, and no poll started either: the scheduler is wedged.
SCHEDULER_OVERDUE_S = 120.0


class Checkable(Protocol):
    """The part of the Store port the watchdog uses."""

    async def self_check(self) -> str | None: ...
    async def outbox_stats(self, now: datetime) -> OutboxStats: ...


class Watchdog:
    """Store health, scheduler liveness and the systemd watchdog ping."""

    def __init__(
        self,
        *,
        scheduler: PollScheduler,
        clock: Clock,
        metrics: Metrics,
        on_alert: Callable[[Event], None],
        status: Callable[[], str],
        run_limit_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler = scheduler
        self._monotonic = monotonic
        self.clock = clock
        self.metrics = metrics
        self.on_alert = on_alert
        self.status = status  # the sdnotify STATUS= line while the store is fine
        # Liveness bounds; tests shorten them. A poll is a few HTTP calls, each bounded by
        # cloud.timeout_s, plus rate-limit waits: ten timeouts (5 min at least) is wedged.
        self.self_check_s = SELF_CHECK_S
        self.store_recover_after = STORE_RECOVER_AFTER
        self.overdue_limit_s = SCHEDULER_OVERDUE_S
        self.run_limit_s = run_limit_s
        self.store_health = selfhealth.StoreHealth()
        self.store_ok = False
        self.tick = time.monotonic()
        self.overloaded = False  # due polls wait past overdue_limit_s, others start
        self._calm_since: float | None = None  # overloaded, but no late poll since then

    async def run(self, store: Checkable) -> None:
        interval = sdnotify.watchdog_interval_s()
        while True:
            period = min(self.self_check_s, interval / 2) if interval else self.self_check_s
            self.tick = time.monotonic()
            await self.check_store(store)
            overdue = self.scheduler.overdue_s()  # a scan of every due job: once a round
            ok, reason = self.healthy(overdue)
            self.metrics.set_scheduler_up(ok)
            self._overload(overdue)
            if ok:
                sdnotify.watchdog()
            else:
                log.error("daemon.unhealthy", reason=reason)
            await asyncio.sleep(period)

    async def check_store(self, store: Checkable) -> None:
        """Probe the store; turn an outage into one store_failed and one store_recovered."""
        try:
            problem = await store.self_check()
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
        self.store_ok = not self.store_health.failing
        if self.store_health.failing and not was_failing:
            log.error("store.failed", reason=self.store_health.reason)
            sdnotify.status(f"state store failing: {self.store_health.reason}")
        elif was_failing and not self.store_health.failing:
            log.info("store.recovered")
            sdnotify.status(self.status())
        for event in events:
            self.on_alert(event)
        if self.store_ok:
            try:
                stats = await store.outbox_stats(self.clock.now())
            except Exception as exc:  # any backend's error; self_check above reports it
                log.warning("store.stats_failed", error=type(exc).__name__)
            else:
                self.metrics.set_outbox(stats.pending, stats.oldest_pending_age_s, stats.dead)

    def _overload(self, overdue: float) -> None:
        """Log when due polls wait past ``overdue_limit_s`` while others still start (more
        polls due than this process starts on time: 100,000 targets at 30 s on one core),
        and when it caught up, once each. Not a liveness failure: a restart would not help,
        and under systemd's watchdog or a liveness probe it would repeat forever.

        Caught up means no late poll for a whole ``overdue_limit_s``: the oldest due poll's
        wait swings with every batch that starts (120 s, then 30, then 144 at 100k), and a
        line per swing would be noise."""
        if overdue > self.overdue_limit_s:
            self._calm_since = None
            if not self.overloaded:
                self.overloaded = True
                log.warning(
                    "scheduler.overloaded",
                    overdue_s=round(overdue),
                    hint="more polls are due than this process starts on time: lengthen the"
                    " intervals, or split the targets over more replicas",
                )
        elif self.overloaded:
            now = self._monotonic()
            if self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= self.overdue_limit_s:
                self.overloaded, self._calm_since = False, None
                log.info("scheduler.caught_up")

    def healthy(self, overdue: float | None = None) -> tuple[bool, str]:
        """Liveness: the scheduler runs, starts due polls, no poll hangs, the checks tick.
        ``overdue``: ``PollScheduler.overdue_s`` when the caller has just read it."""
        if not self.scheduler.running:
            return False, "scheduler is not running"
        stale = time.monotonic() - self.tick
        if stale > max(30.0, 3 * self.self_check_s):
            return False, f"self-check loop has not run for {stale:.0f} s"
        if overdue is None:
            overdue = self.scheduler.overdue_s()
        idle = self.scheduler.seconds_since_last_run()
        if overdue > self.overdue_limit_s and idle > self.overdue_limit_s:
            # Polls late while others still start is overload, not a wedge (see ``_overload``).
            return False, (
                f"scheduler wedged: a due poll has waited {overdue:.0f} s to start,"
                f" and none has started for {idle:.0f} s"
            )
        longest = self.scheduler.longest_run()
        if longest is not None and longest[1] > self.run_limit_s:
            return False, f"poll {longest[0]} wedged: running for {longest[1]:.0f} s"
        return True, "ok"
