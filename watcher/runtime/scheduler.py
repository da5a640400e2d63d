"""APScheduler 3.11 behind a small interface: one job per watched thing, adaptive delays.

Each job is an ``async`` callable returning the delay until its next run, or ``None`` to
stop. The wrapper owns the APScheduler details the rest of the daemon should not know:
``max_instances=1`` and ``coalesce`` so polls of one target never overlap, no misfire
dropping (a late poll is still worth running), and the graceful shutdown APScheduler lacks
(LIBRARIES.md 2.5: its shutdown cancels running coroutine jobs, so we pause, wait for the
in-flight ones with a bound, and only then shut it down).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = structlog.get_logger(__name__)

JobFunc = Callable[[], Awaitable[float | None]]

# A nominal interval for the trigger. Every run sets its own next run time explicitly, so
# this only matters if a run crashes before it could: then the job retries a minute later.
_FALLBACK_S = 60.0


class PollScheduler:
    """Runs adaptive async jobs on the daemon's loop and stops them cleanly."""

    def __init__(self, *, lateness_window: int = 4096) -> None:
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._funcs: dict[str, JobFunc] = {}
        self._due: dict[str, float] = {}  # job id -> monotonic time the run was meant for
        self._inflight: set[asyncio.Task[object]] = set()
        self._lateness: list[float] = []
        self._window = lateness_window
        self.on_lateness: Callable[[float], None] | None = None  # e.g. a /metrics histogram
        self._last_run = time.monotonic()
        self.runs = 0

    def start(self) -> None:
        """Start inside the running loop (AsyncIOScheduler needs one)."""
        self._scheduler.start()

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running) and self._scheduler.state == 1

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._funcs

    @property
    def inflight(self) -> int:
        """How many job runs are executing right now."""
        return sum(1 for task in self._inflight if not task.done())

    @property
    def job_ids(self) -> list[str]:
        return list(self._funcs)

    def add(self, job_id: str, func: JobFunc, *, first_delay: float = 0.0) -> None:
        """Add (or replace) a job whose first run is ``first_delay`` seconds from now."""
        self._funcs[job_id] = func
        when = datetime.now(UTC) + timedelta(seconds=max(0.0, first_delay))
        self._due[job_id] = time.monotonic() + max(0.0, first_delay)
        self._scheduler.add_job(
            self._run,
            IntervalTrigger(seconds=_FALLBACK_S, timezone=UTC),
            args=[job_id],
            id=job_id,
            name=job_id,
            next_run_time=when,
            replace_existing=True,
        )

    def remove(self, job_id: str) -> None:
        self._funcs.pop(job_id, None)
        self._due.pop(job_id, None)
        if self._scheduler.get_job(job_id) is not None:
            self._scheduler.remove_job(job_id)

    def run_soon(self, job_id: str, delay: float = 0.0) -> None:
        """Move a job's next run earlier (a new workflow to look at, a reload)."""
        job = self._scheduler.get_job(job_id)
        if job is not None:
            self._due[job_id] = time.monotonic() + delay
            job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=delay))

    async def _run(self, job_id: str) -> None:
        func = self._funcs.get(job_id)
        if func is None:
            return
        started = time.monotonic()
        self._last_run = started
        due = self._due.pop(job_id, None)
        if due is not None:
            self._record_lateness(max(0.0, started - due))
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        structlog.contextvars.clear_contextvars()  # jobs inherit a stale context otherwise
        delay: float | None = _FALLBACK_S
        try:
            delay = await func()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job.crashed", job=job_id)
        finally:
            if task is not None:
                self._inflight.discard(task)
            self.runs += 1
        if job_id not in self._funcs:
            return  # removed while running
        if delay is None:
            self.remove(job_id)
            return
        self._due[job_id] = time.monotonic() + delay
        job = self._scheduler.get_job(job_id)
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=delay))

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

    def seconds_since_last_run(self) -> float:
        return time.monotonic() - self._last_run

    async def shutdown(self, timeout: float) -> None:
        """Stop starting jobs, let running ones finish within ``timeout``, then stop."""
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
