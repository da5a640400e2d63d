"""The poll scheduler: one job per watched thing, adaptive delays, on the loop's own timers.

Each job is an ``async`` callable returning the delay until its next run, or ``None`` to
stop. Runs of one job never overlap (a run asked for while one is running follows it at
once), a late run is still run (no misfire dropping), and shutdown is graceful: stop
starting runs, wait for the running ones with a bound, then cancel the rest.

Each job's next run is one ``loop.call_later`` timer. This replaced APScheduler 3.11
(issue 12.4): its ``add_job`` cost ~0.3 ms (signature inspection, an O(N) sorted job list)
so adding 10,000 jobs blocked the loop for seconds, and every run's ``job.modify`` woke it
through ``call_soon_threadsafe`` (PERF_NOTES.md: ~25 % of a poll's CPU). A timer is O(log N)
to arm and to cancel, and nothing here needs APScheduler's triggers or job stores.

With a ``PollBudget`` (``use_budget``) the scheduler also keeps demand within the request
budget (issue 12.2): each run's requested delay is recorded as the job's interval and
stretched by its lane's factor, and a start beyond the budget waits for its reserved slot
as a timer, not as a coroutine parked in the limiter. ``job_info`` says which lane (API
host) a job polls and whether it is active.

Every delay is clamped into ``[0, max_delay_s]`` here (NaN, inf, 1e300: a computation gone
wrong must neither raise in ``timedelta`` nor park a job for ever), and a job that crashes
is retried on a jittered exponential backoff up to that cap, not APScheduler's fixed
interval.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import structlog

from watcher.core import cadence
from watcher.runtime.budget import PollBudget

log = structlog.get_logger(__name__)

JobFunc = Callable[[], Awaitable[float | None]]
# job id -> (lane, active?); lane None: the job sends no request now (HA: not held here).
JobInfo = Callable[[str], tuple[str | None, bool]]

# A job's interval before its first run says otherwise (the app sets the idle interval).
_FALLBACK_S = 60.0
CRASH_BASE_S = 5.0  # first retry of a crashed job; doubles per crash in a row, up to the cap
PACE_SLACK_S = 0.05  # a start slot this close is taken at once (no timer for a blink)


class PollScheduler:
    """Runs adaptive async jobs on the daemon's loop and stops them cleanly."""

    def __init__(self, *, lateness_window: int = 4096, max_delay_s: float = 3600.0) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._paused = False
        self._timers: dict[str, asyncio.TimerHandle] = {}  # job id -> its next run
        self._funcs: dict[str, JobFunc] = {}
        self._due: dict[str, float] = {}  # job id -> monotonic time the run was meant for
        self._inflight: set[asyncio.Task[object]] = set()
        self._lateness: list[float] = []
        self._window = lateness_window
        self.on_lateness: Callable[[float], None] | None = None  # e.g. a /metrics histogram
        self._last_run = time.monotonic()
        self._running: dict[str, float] = {}  # job id -> monotonic start of its current run
        self._rerun: set[str] = set()  # jobs asked to run while running: run again at once
        self._crashes: dict[str, int] = {}  # job id -> crashes in a row
        self.max_delay_s = max_delay_s
        self.runs = 0
        self.crashes = 0
        self.budget: PollBudget | None = None
        self.job_info: JobInfo = lambda _job_id: ("", False)
        self.first_interval_s = _FALLBACK_S  # a job's interval until its first run says
        self._never_ran: set[str] = set()
        self._paid: set[str] = set()  # jobs whose next run holds a reserved start slot
        self._stopping = False

    def use_budget(self, budget: PollBudget | None) -> None:
        """Keep demand within ``budget`` (None: no stretch, no pacing; the default)."""
        self.budget = budget
        if budget is not None:
            for job_id in self._funcs:
                self._demand(job_id, self.first_interval_s)

    def start(self) -> None:
        """Start inside the running loop; jobs added before start are armed now."""
        self._loop = asyncio.get_running_loop()
        self._started = True
        now = time.monotonic()
        for job_id, due in list(self._due.items()):
            self._arm(job_id, max(0.0, due - now))

    @property
    def running(self) -> bool:
        return self._started and not self._paused

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._funcs

    @property
    def inflight(self) -> int:
        """How many job runs are executing right now (a start that only moved to its
        budget slot is not one)."""
        return len(self._running)

    @property
    def job_ids(self) -> list[str]:
        return list(self._funcs)

    def add(self, job_id: str, func: JobFunc, *, first_delay: float = 0.0) -> None:
        """Add (or replace) a job whose first run is ``first_delay`` seconds from now."""
        self._funcs[job_id] = func
        self._never_ran.add(job_id)
        self._demand(job_id, self.first_interval_s)
        self._arm(job_id, self.bound(first_delay))

    def _arm(self, job_id: str, delay: float) -> None:
        """Set the job's next run ``delay`` seconds from now (replacing any other)."""
        self._due[job_id] = time.monotonic() + delay
        old = self._timers.pop(job_id, None)
        if old is not None:
            old.cancel()
        if self._loop is not None and self.running:
            self._timers[job_id] = self._loop.call_later(delay, self._start_run, job_id)

    def _start_run(self, job_id: str) -> None:
        self._timers.pop(job_id, None)
        if not self.running or self._loop is None:
            return
        task = self._loop.create_task(self._run(job_id), name=f"poll {job_id}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def bound(self, delay: float | None) -> float:
        """A delay clamped into ``[0, max_delay_s]``; never raises."""
        return cadence.bounded(delay, self.max_delay_s)

    def remove(self, job_id: str) -> None:
        self._funcs.pop(job_id, None)
        self._rerun.discard(job_id)
        self._crashes.pop(job_id, None)
        self._due.pop(job_id, None)
        self._never_ran.discard(job_id)
        self._paid.discard(job_id)
        if self.budget is not None:
            self.budget.drop_job(job_id)
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def run_soon(self, job_id: str, delay: float = 0.0) -> None:
        """Move a job's next run earlier (a new workflow to look at, a reload)."""
        if job_id in self._funcs:
            self._arm(job_id, self.bound(delay))

    async def _run(self, job_id: str) -> None:
        func = self._funcs.get(job_id)
        if func is None:
            return
        if job_id in self._running:  # never two runs of one job: run again when this ends
            self._rerun.add(job_id)
            return
        if self._wait_for_slot(job_id):
            return
        started = time.monotonic()
        self._last_run = started
        self._running[job_id] = started
        due = self._due.pop(job_id, None)
        if due is not None:
            self._record_lateness(max(0.0, started - due))
        structlog.contextvars.clear_contextvars()  # jobs inherit a stale context otherwise
        delay: float | None
        try:
            delay = await func()
        except asyncio.CancelledError:
            if self._stopping:
                return  # shutdown cancelled it: an ending, not an error to log per job
            raise
        except Exception:
            delay = self._crashed(job_id)
        else:
            self._crashes.pop(job_id, None)
        finally:
            self._running.pop(job_id, None)
            self._never_ran.discard(job_id)
            self.runs += 1
        if job_id not in self._funcs:
            return  # removed while running
        if delay is None:
            self.remove(job_id)
            return
        delay = self.bound(delay) * self._demand(job_id, delay)
        if job_id in self._rerun:
            self._rerun.discard(job_id)
            delay = 0.0
        self._arm(job_id, delay)

    def _demand(self, job_id: str, interval: float) -> float:
        """Record the job's requested interval; the factor its delay is stretched by."""
        if self.budget is None:
            return 1.0
        try:
            lane, active = self.job_info(job_id)
        except Exception:  # a job must never lose its next run to a bookkeeping error
            log.exception("scheduler.job_info_failed", job=job_id)
            lane, active = "", False
        if lane is None:
            self.budget.drop_job(job_id)
            return 1.0
        return self.budget.set_job(job_id, lane, self.bound(interval), active)

    def _wait_for_slot(self, job_id: str) -> bool:
        """Pace starts to the budget: True when this run moved to its reserved slot."""
        if self.budget is None or job_id in self._paid:
            self._paid.discard(job_id)
            return False
        try:
            lane, active = self.job_info(job_id)
        except Exception:
            log.exception("scheduler.job_info_failed", job=job_id)
            return False
        if lane is None:
            return False
        wait = self.budget.reserve(lane, active=active)
        if wait <= PACE_SLACK_S:
            return False
        self._paid.add(job_id)
        self._arm(job_id, wait)
        return True

    def behind_schedule(self) -> int:
        """Jobs that never ran and are not due within their (stretched) interval either:
        the readiness question of issue 12.2 ("every job polled once, or scheduled within
        its interval"). Only jobs that never ran are looked at."""
        now = time.monotonic()
        behind = 0
        for job_id in self._never_ran:
            due = self._due.get(job_id)
            if due is None or job_id in self._running:
                continue
            budget = self.budget
            factor = budget.factor(job_id) if budget is not None else 1.0
            interval = self.bound(self.first_interval_s) * factor
            if abs(due - now) > interval + 1.0:
                behind += 1
        return behind

    def _crashed(self, job_id: str) -> float:
        """Backoff for a job whose run raised; the traceback is logged on the first crash
        of a run only (the job's own failure handling is the place for details)."""
        count = self._crashes.get(job_id, 0) + 1
        self._crashes[job_id] = count
        self.crashes += 1
        delay = cadence.failure_delay(count, CRASH_BASE_S, self.max_delay_s, random.random())  # noqa: S311
        if count == 1:
            log.exception("job.crashed", job=job_id, retry_in_s=round(delay, 1))
        else:
            log.warning("job.crashed_again", job=job_id, crashes=count, retry_in_s=round(delay, 1))
        return delay

    def _record_lateness(self, seconds: float) -> None:
        self._lateness.append(seconds)
        if self.on_lateness is not None:
            self.on_lateness(seconds)
        if len(self._lateness) > self._window:
            del self._lateness[: len(self._lateness) - self._window]

    def lateness_quantile(self, q: float) -> float | None:
        """Quantile of start lateness over recent runs (seconds), for benchmarks and health."""
        if not self._lateness:
            return None
        ordered = sorted(self._lateness)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def overdue_s(self) -> float:
        """How long the most overdue job has waited past its due time (0 when none is).

        The liveness stamp of the scheduler: a running scheduler starts due jobs within
        milliseconds, so minutes here mean its loop or its wake-up is wedged.
        """
        if not self._due:
            return 0.0
        return max(0.0, time.monotonic() - min(self._due.values()))

    def longest_run(self) -> tuple[str, float] | None:
        """The job whose current run started first, and for how many seconds it has run."""
        if not self._running:
            return None
        job_id = min(self._running, key=self._running.__getitem__)
        return job_id, time.monotonic() - self._running[job_id]

    def seconds_since_last_run(self) -> float:
        return time.monotonic() - self._last_run

    async def shutdown(self, timeout: float) -> None:
        """Stop starting jobs, let running ones finish within ``timeout``, then stop.

        Polls still waiting for the request budget should be released first (the app
        closes its ``HostBudget``): they have sent nothing and end at once; cancelled runs
        end quietly, not with a traceback each.
        """
        self._stopping = True
        self._paused = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        pending = [t for t in self._inflight if not t.done()]
        if pending:
            log.info("scheduler.draining", jobs=len(pending), timeout_s=timeout)
            _, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                task.cancel()
            if still:
                log.warning("scheduler.cancelled_jobs", jobs=len(still))
                await asyncio.wait(still, timeout=1.0)
        self._started = False
