from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.interval import IntervalTrigger

from watcher.core import cadence
from watcher.runtime.apscheduler_loop import CoalescingAsyncIOScheduler
from watcher.runtime.budget import PollBudget
from watcher.runtime.inflight import InFlight

log = structlog.get_logger(__name__)

JobFunc = Callable[[], Awaitable[float | None]]
# job id -> (lane, active?); lane None: the job sends no request now (HA: not held here).
JobInfo = Callable[[str], tuple[str | None, bool]]

# A job's interval before its first run says otherwise (the app sets the idle interval).
_FALLBACK_S = 60.0
# The shortest trigger interval: a shorter delay (a deadline close by, a rerun) moves the
# next run instead of making the trigger fire that often.
MIN_TRIGGER_S = 1.0
SAME_DELAY_S = 0.001  # delays this close are "unchanged": no reschedule
# A run that started later than this re-anchors its schedule: its next run comes one delay
# after it started, not after the time it was due (see ``_then``).
REANCHOR_LATE_S = 1.0
CRASH_BASE_S = 5.0  # first retry of a crashed job; doubles per crash in a row, up to the cap
PACE_SLACK_S = 0.05  # a start slot this close is taken at once (no move for a blink)
# Runs executing at once; the next due ones wait as a job id each (see ``_hold``). One lane
# (API host) may have a quarter of them: a region whose API hangs cannot hold them all.
MAX_IN_FLIGHT = 512
MAX_IN_FLIGHT_PER_LANE = MAX_IN_FLIGHT // 4


class PollScheduler:
    """Runs adaptive async jobs on the daemon's loop and stops them cleanly."""

    def __init__(
        self,
        *,
        lateness_window: int = 4096,
        max_delay_s: float = 3600.0,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_in_flight_per_lane: int = MAX_IN_FLIGHT_PER_LANE,
    ) -> None:
        self._scheduler = CoalescingAsyncIOScheduler(
            timezone=UTC,
            # Overlap is prevented here (``_running``), not by APScheduler's max_instances:
            # its instance count drops in a done-callback queued AFTER the wake-up that a
            # run's own reschedule queues, so a run due at once was skipped as "maximum
            # number of running instances reached" and the job slept a whole interval. An
            # instance that finds its job running returns at once, so the limit is only a
            # bound; a low one logged a warning per tick of a job slower than its interval.
            job_defaults={"coalesce": True, "max_instances": 100, "misfire_grace_time": None},
        )
        self._funcs: dict[str, JobFunc] = {}
        self._interval: dict[str, float] = {}  # job id -> its trigger's interval (seconds)
        self._due: dict[str, float] = {}  # job id -> monotonic time the run was meant for
        self._inflight: set[asyncio.Task[object]] = set()
        self._lateness: list[float] = []
        self._window = lateness_window
        self.on_lateness: Callable[[float], None] | None = None  # e.g. a /metrics histogram
        self._last_run = time.monotonic()
        self._running: dict[str, float] = {}  # job id -> monotonic start of its current run
        self._rerun: set[str] = set()  # jobs asked to run while running: run again at once
        self._soon: set[str] = set()  # jobs whose next run was asked for (run_soon)
        self._overlapped: set[str] = set()  # jobs whose trigger ticked during their run
        self._crashes: dict[str, int] = {}  # job id -> crashes in a row
        self.max_delay_s = max_delay_s
        self.runs = 0
        self.crashes = 0
        self.reschedules = 0  # APScheduler calls made to move a job (tests, benchmarks)
        self.budget: PollBudget | None = None
        self.job_info: JobInfo = lambda _job_id: ("", False)
        self.first_interval_s = _FALLBACK_S  # a job's interval until its first run says
        self._never_ran: set[str] = set()
        self._paid: set[str] = set()  # jobs whose next run holds a reserved start slot
        self._slots = InFlight(max_in_flight, min(max_in_flight, max_in_flight_per_lane))
        self._stopping = False

    def use_budget(self, budget: PollBudget | None) -> None:
        """Keep demand within ``budget`` (None: no stretch, no pacing; the default)."""
        self.budget = budget
        if budget is not None:
            for job_id in self._funcs:
                self._demand(job_id, self._interval.get(job_id, self.first_interval_s))

    def start(self) -> None:
        """Start inside the running loop (AsyncIOScheduler needs one)."""
        self._scheduler.start()

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running) and self._scheduler.state == STATE_RUNNING

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

    def interval(self, job_id: str) -> float | None:
        """Seconds between the job's runs as its trigger keeps them now (after any stretch)."""
        return self._interval.get(job_id)

    def add(
        self,
        job_id: str,
        func: JobFunc,
        *,
        first_delay: float = 0.0,
        first_interval: float | None = None,
    ) -> None:
        """Add (or replace) a job whose first run is ``first_delay`` seconds from now.

        ``first_interval``: what the job is expected to ask for until its first run says
        (default ``first_interval_s``). It is the job's demand on the budget meanwhile: 1,000
        idle clusters counted at idle_s instead of their discovery_s stretched the first
        round's next runs to 222 s instead of 167 s, all due in one bunch after a lull."""
        self._funcs[job_id] = func
        self._never_ran.add(job_id)
        first = self.first_interval_s if first_interval is None else first_interval
        self._demand(job_id, first)
        first_delay = self.bound(first_delay)
        interval = max(MIN_TRIGGER_S, self.bound(first))
        self._interval[job_id] = interval
        self._due[job_id] = time.monotonic() + first_delay
        self._scheduler.add_job(
            self._run,
            IntervalTrigger(seconds=interval, timezone=UTC),
            args=[job_id],
            id=job_id,
            name=job_id,
            next_run_time=datetime.now(UTC) + timedelta(seconds=first_delay),
            replace_existing=True,
        )

    def _arm(self, job_id: str, delay: float) -> None:
        """Move the job's next run to ``delay`` seconds from now; the trigger keeps its
        interval (runs after that one follow it unless a run asks otherwise)."""
        self._due[job_id] = time.monotonic() + delay
        job = self._scheduler.get_job(job_id)
        if job is not None:
            self.reschedules += 1
            job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=delay))

    def _then(
        self, job_id: str, delay: float, due: float, started: float, overlapped: bool
    ) -> None:
        """Schedule the run after this one, ``delay`` seconds on: nothing to do when the
        trigger's interval is that delay already (see the module docstring), unless its
        tick already passed during this run (``overlapped``: a run longer than it) or this
        run started more than ``REANCHOR_LATE_S`` late.

        A late run re-anchors: left on its trigger, its next run would be due one interval
        after the time this one was due, i.e. sooner than ``delay`` after it, and a backlog
        (the first round of 30,000 targets, two requests each, on one core) would keep every
        later round as late as the first: each job polled again at once, never catching up.
        """
        same = abs(delay - self._interval.get(job_id, -1.0)) <= SAME_DELAY_S
        if same and not overlapped and started - due <= REANCHOR_LATE_S:
            # The trigger fires one interval after this run's due time: its next due.
            self._due[job_id] = due + delay
            return
        if same or delay < MIN_TRIGGER_S:
            self._arm(job_id, delay)
            return
        self._interval[job_id] = delay
        self._due[job_id] = time.monotonic() + delay
        if self._scheduler.get_job(job_id) is not None:
            self.reschedules += 1
            self._scheduler.reschedule_job(
                job_id, trigger=IntervalTrigger(seconds=delay, timezone=UTC)
            )

    def bound(self, delay: float | None) -> float:
        """A delay clamped into ``[0, max_delay_s]``; never raises."""
        return cadence.bounded(delay, self.max_delay_s)

    def remove(self, job_id: str) -> None:
        self._funcs.pop(job_id, None)
        self._interval.pop(job_id, None)
        self._rerun.discard(job_id)
        self._soon.discard(job_id)
        self._overlapped.discard(job_id)
        self._crashes.pop(job_id, None)
        self._due.pop(job_id, None)
        self._never_ran.discard(job_id)
        self._paid.discard(job_id)
        self._slots.unhold(job_id)
        if self.budget is not None:
            self.budget.drop_job(job_id)
        if self._scheduler.get_job(job_id) is not None:
            self._scheduler.remove_job(job_id)

    def run_soon(self, job_id: str, delay: float = 0.0) -> None:
        """Move a job's next run earlier (a new workflow to look at, a reload)."""
        if job_id in self._funcs:
            self._soon.add(job_id)
            self._arm(job_id, self.bound(delay))

    async def _run(self, job_id: str) -> None:
        func = self._funcs.get(job_id)
        if func is None or self._stopping:
            return
        if job_id in self._running:  # never two runs of one job
            if job_id in self._soon:
                self._rerun.add(job_id)  # asked for while running: run again when it ends
            else:
                self._overlapped.add(job_id)  # the trigger's tick came during a long run
            return
        self._soon.discard(job_id)
        if self._wait_for_slot(job_id) or self._hold(job_id):
            return
        started = time.monotonic()
        self._last_run = started
        self._running[job_id] = started
        due = self._due.pop(job_id, None)
        if due is not None:
            self._record_lateness(max(0.0, started - due))
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
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
            if task is not None:
                self._inflight.discard(task)
            self._running.pop(job_id, None)
            self._slots.release(job_id)
            self._never_ran.discard(job_id)
            self.runs += 1
            self._start_held()
        if job_id not in self._funcs:
            return  # removed while running
        if delay is None:
            self.remove(job_id)
            return
        delay = self.bound(delay) * self._demand(job_id, delay)
        overlapped = job_id in self._overlapped
        self._overlapped.discard(job_id)
        if job_id in self._rerun:
            self._rerun.discard(job_id)
            self._arm(job_id, 0.0)
            return
        self._then(
            job_id, self.bound(delay), due if due is not None else started, started, overlapped
        )

    def _demand(self, job_id: str, interval: float) -> float:
        """Record the job's requested interval; the factor its delay is stretched by."""
        if self.budget is None:
            return 1.0
        lane, active = self._info(job_id)
        if lane is None:
            self.budget.drop_job(job_id)
            return 1.0
        return self.budget.set_job(job_id, lane, self.bound(interval), active)

    def _hold(self, job_id: str) -> bool:
        """True when this run must wait for a slot (``InFlight``: a total cap and one per
        lane): it is held, in due order, and started when a run in flight ends.

        When the cloud answers slower than the budget admits runs (100,000 workflow targets
        on one core), every started run waits somewhere in its call chain, ~8 KB each
        (a task, a dozen coroutine frames, a URL): 2 GB at 100,000. A held run costs a dict
        entry; it starts when a run in flight ends (``_start_held``), and its lateness
        counts from its due time. It keeps its paced start slot (``_paid``).
        """
        if self._slots.admit(job_id, self._info(job_id)[0]):
            return False
        self._paid.add(job_id)
        return True

    def _info(self, job_id: str) -> tuple[str | None, bool]:
        """``job_info``, or ("", False) when asking fails: a job must never lose its run
        to a bookkeeping error (it is logged)."""
        try:
            return self.job_info(job_id)
        except Exception:
            log.exception("scheduler.job_info_failed", job=job_id)
            return "", False

    def _start_held(self) -> None:
        """Start the longest-held run that may start (unless stopping); skips jobs removed
        meanwhile."""
        while not self._stopping and (job_id := self._slots.next_held()) is not None:
            if job_id in self._funcs and job_id not in self._running:
                # Straight onto the loop, not through APScheduler: moving the job there
                # costs a jobstore update per held run; its trigger keeps ticking.
                asyncio.get_running_loop().create_task(self._run(job_id))
                return

    def _wait_for_slot(self, job_id: str) -> bool:
        """Pace starts to the budget: True when this run moved to its reserved slot."""
        if self.budget is None or job_id in self._paid:
            self._paid.discard(job_id)
            return False
        lane, active = self._info(job_id)
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
            interval = self._interval.get(job_id, self.first_interval_s) * factor
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
        milliseconds, so minutes here while no run starts (``seconds_since_last_run``) mean
        its loop or its wake-up is wedged; while runs do start, more are due than the
        process starts on time (the watchdog logs ``scheduler.overloaded``). A run held
        for a free slot (``_hold``) is not counted: an overloaded daemon (more due runs
        than one core serves) is late, not wedged, and /healthz failing would have systemd
        restart it in a loop. Runs in flight that never end are the watchdog's other check
        (``longest_run``).
        """
        held = self._slots.is_held
        oldest = min((due for job, due in self._due.items() if not held(job)), default=None)
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

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
        if self._scheduler.running:
            self._scheduler.pause()
        pending = [t for t in self._inflight if not t.done()]
        if pending:
            log.info("scheduler.draining", jobs=len(pending), timeout_s=timeout)
            _, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                task.cancel()
            if still:
                log.warning("scheduler.cancelled_jobs", jobs=len(still))
                await asyncio.wait(still, timeout=1.0)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # APScheduler defers the state change to the next tick
