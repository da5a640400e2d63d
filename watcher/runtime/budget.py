"""The request budget per API host (SPEC.md section 5), on both sides of a poll.

``HostBudget`` is the limiter every request passes: a token bucket per host (default 10
requests/s). When callers must wait, those polling an active workflow go before idle ones.
Its cost per ``acquire`` is O(1) however many wait (two FIFO queues, a live count), and
``close`` releases every waiter at once on shutdown.

``PollBudget`` is the scheduler's side, which keeps that queue short (issue 12.2): it knows
every job's requested interval, so the demanded rate of a lane (one API host) is the sum of
1/interval over its jobs (a run is ~1 request). When demand exceeds the allowed rate, delays
are stretched: idle jobs first (up to ``IDLE_STRETCH_FIRST``) while active ones keep their
interval, then both evenly. Job starts are also paced through a token bucket of the same
rate: a start beyond the budget is moved to its reserved slot (a timer), instead of becoming
a coroutine parked in the limiter. Demand crossing the rate starts one "budget exceeded"
episode (reported once, with the demanded and allowed rates); it ends below
``RECOVER_BELOW`` of the rate, so a demand hovering at the limit does not page twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from watcher.core.ports import Priority

__all__ = [
    "ACTIVE",
    "IDLE",
    "HostBudget",
    "PollBudget",
    "Priority",
    "Stretch",
    "stretch_for",
]

ACTIVE = Priority.ACTIVE
IDLE = Priority.IDLE

IDLE_STRETCH_FIRST = 4.0  # idle intervals stretch up to this before active ones stretch
MIN_INTERVAL_S = 0.1  # a shorter requested delay (a deadline close by) counts as this
RECOVER_BELOW = 0.8  # an exceeded episode ends when demand falls below this share of rate
# Stretched polls fill this share of the budget, not all of it: a run is counted as one
# request, but a change's enrichment and a first sight's cluster name add a few, and a
# schedule at 100 % of the rate leaves the limiter a queue that never drains.
STRETCH_TO = 0.9
REPORT_AFTER_S = 1.0  # an episode is reported once demand settled (10k jobs being added)


# -- the limiter -------------------------------------------------------------------------


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    updated: float
    # One FIFO per priority; a cancelled caller's future stays until popped (skipped then).
    queues: dict[Priority, deque[asyncio.Future[None]]] = field(
        default_factory=lambda: {Priority.ACTIVE: deque(), Priority.IDLE: deque()}
    )
    waiting: int = 0  # live waiters (futures not done)
    timer: asyncio.TimerHandle | None = None


class HostBudget:
    """Token buckets keyed by host; ``acquire`` waits for a token, active callers first."""

    def __init__(
        self,
        rate: float = 10.0,
        burst: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._capacity = burst if burst and burst >= 1 else max(1.0, rate)
        self._monotonic = monotonic
        self._buckets: dict[str, _Bucket] = {}
        self._closed = False

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._capacity

    def _bucket(self, host: str) -> _Bucket:
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = _Bucket(self._rate, self._capacity, self._capacity, self._monotonic())
            self._buckets[host] = bucket
        return bucket

    def _refill(self, bucket: _Bucket) -> None:
        now = self._monotonic()
        bucket.tokens = min(bucket.capacity, bucket.tokens + (now - bucket.updated) * bucket.rate)
        bucket.updated = now

    async def acquire(self, host: str, *, priority: Priority = Priority.IDLE) -> None:
        if self._closed:
            raise asyncio.CancelledError  # shutting down: no new request starts
        bucket = self._bucket(host)
        self._refill(bucket)
        if not bucket.waiting and bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        bucket.queues[Priority(priority)].append(future)
        bucket.waiting += 1
        self._schedule(bucket)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                bucket.tokens += 1  # granted just as we were cancelled: give it back
            elif not self._closed:  # close() zeroed the count already
                future.cancel()  # skipped when its turn comes (left in the queue: O(1))
                bucket.waiting -= 1
            raise

    def _schedule(self, bucket: _Bucket) -> None:
        if bucket.timer is not None or not bucket.waiting:
            return
        wait = max(0.0, (1 - bucket.tokens) / bucket.rate)
        bucket.timer = asyncio.get_running_loop().call_later(wait, self._release, bucket)

    def _release(self, bucket: _Bucket) -> None:
        bucket.timer = None
        self._refill(bucket)
        while bucket.waiting and bucket.tokens >= 1:
            future = self._next(bucket)
            if future is None:
                break
            bucket.tokens -= 1
            bucket.waiting -= 1
            future.set_result(None)
        self._schedule(bucket)

    @staticmethod
    def _next(bucket: _Bucket) -> asyncio.Future[None] | None:
        """The first live waiter, active before idle; done (cancelled) ones are dropped."""
        for priority in (Priority.ACTIVE, Priority.IDLE):
            queue = bucket.queues[priority]
            while queue:
                future = queue.popleft()
                if not future.done():
                    return future
        return None

    def waiting(self, host: str) -> int:
        """Callers waiting for a token of ``host`` now (O(1))."""
        bucket = self._buckets.get(host)
        return bucket.waiting if bucket is not None else 0

    def waiting_total(self) -> int:
        """Callers waiting for a token of any host (O(hosts))."""
        return sum(bucket.waiting for bucket in self._buckets.values())

    def close(self) -> int:
        """Shutdown: cancel every waiting caller at once (none of them has sent anything);
        later ``acquire`` calls are cancelled too. Returns how many were waiting."""
        self._closed = True
        cancelled = 0
        for bucket in self._buckets.values():
            if bucket.timer is not None:
                bucket.timer.cancel()
                bucket.timer = None
            for queue in bucket.queues.values():
                while queue:
                    future = queue.popleft()
                    if not future.done():
                        future.cancel()
                        cancelled += 1
            bucket.waiting = 0
        return cancelled


# -- the scheduler's side: demand, stretch, pacing ------------------------------------------


@dataclass(frozen=True, slots=True)
class Stretch:
    """Factors the requested delays of active and idle jobs are multiplied by."""

    active: float = 1.0
    idle: float = 1.0

    def of(self, active: bool) -> float:
        return self.active if active else self.idle


NO_STRETCH = Stretch()


def stretch_for(
    active_rate: float, idle_rate: float, allowed: float, idle_first: float = IDLE_STRETCH_FIRST
) -> Stretch:
    """The stretch that brings ``active_rate + idle_rate`` (requests/s) down to ``allowed``.

    Idle jobs absorb the excess alone while stretching them by at most ``idle_first`` is
    enough; beyond that both stretch by one common factor (idle ones keep their extra
    ``idle_first``). Continuous at the switch, and exact: the stretched demand is ``allowed``.
    """
    if active_rate + idle_rate <= allowed:
        return NO_STRETCH
    if active_rate + idle_rate / idle_first <= allowed:
        return Stretch(1.0, idle_rate / (allowed - active_rate))
    even = (active_rate + idle_rate / idle_first) / allowed
    return Stretch(even, idle_first * even)


@dataclass(slots=True)
class _Job:
    lane: str
    rate: float  # 1 / requested interval
    active: bool


@dataclass(slots=True)
class _Lane:
    rate: float
    burst: float
    tokens: float
    updated: float
    active_tokens: float
    demand: dict[bool, float] = field(default_factory=lambda: {True: 0.0, False: 0.0})
    jobs: int = 0
    stretch: Stretch = NO_STRETCH
    exceeded: bool = False
    reported: bool = False  # the episode state last reported

    @property
    def demanded(self) -> float:
        return self.demand[True] + self.demand[False]


# Reports an episode: (lane, exceeded?, demanded req/s, allowed req/s).
EpisodeHook = Callable[[str, bool, float, float], None]


class PollBudget:
    """Demanded rate, stretch factors and start pacing per lane (API host); O(1) per call."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        on_episode: EpisodeHook | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst and burst >= 1 else max(1.0, rate)
        self._monotonic = monotonic
        self._lanes: dict[str, _Lane] = {}
        self._jobs: dict[str, _Job] = {}
        self.on_episode = on_episode
        self._report_timer: asyncio.TimerHandle | None = None

    def _lane(self, name: str) -> _Lane:
        lane = self._lanes.get(name)
        if lane is None:
            lane = _Lane(self.rate, self.burst, self.burst, self._monotonic(), self.burst)
            self._lanes[name] = lane
        return lane

    def set_job(self, job_id: str, lane: str, interval: float, active: bool) -> float:
        """Record a job's requested interval; returns the factor its delay is stretched by."""
        self._forget(job_id)
        job = _Job(lane, 1.0 / max(MIN_INTERVAL_S, interval), active)
        self._jobs[job_id] = job
        slot = self._lane(lane)
        slot.demand[active] += job.rate
        slot.jobs += 1
        self._restretch(lane, slot)
        return slot.stretch.of(active)

    def drop_job(self, job_id: str) -> None:
        lane = self._forget(job_id)
        if lane is not None:
            self._restretch(lane, self._lanes[lane])

    def _forget(self, job_id: str) -> str | None:
        job = self._jobs.pop(job_id, None)
        if job is None:
            return None
        slot = self._lanes[job.lane]
        slot.jobs -= 1
        if slot.jobs == 0:  # reset the running sums: no float residue survives an empty lane
            slot.demand = {True: 0.0, False: 0.0}
        else:
            slot.demand[job.active] = max(0.0, slot.demand[job.active] - job.rate)
        return job.lane

    def _restretch(self, name: str, lane: _Lane) -> None:
        demanded = lane.demanded
        lane.stretch = stretch_for(lane.demand[True], lane.demand[False], STRETCH_TO * lane.rate)
        if not lane.exceeded and demanded > lane.rate:
            lane.exceeded = True
        elif lane.exceeded and demanded < RECOVER_BELOW * lane.rate:
            lane.exceeded = False
        if lane.exceeded != lane.reported and self._report_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a plain function call): say it now
                self._report()
            else:  # say it with the demand once it settled, not the first job over the line
                self._report_timer = loop.call_later(REPORT_AFTER_S, self._report)

    def _report(self) -> None:
        self._report_timer = None
        for name, lane in self._lanes.items():
            if lane.exceeded == lane.reported:
                continue  # unchanged, or back where it was before anyone was told
            lane.reported = lane.exceeded
            if self.on_episode is not None:
                self.on_episode(name, lane.exceeded, lane.demanded, lane.rate)

    def factor(self, job_id: str) -> float:
        """The stretch factor of a job's lane and class (1.0 for an unknown job)."""
        job = self._jobs.get(job_id)
        if job is None:
            return 1.0
        return self._lanes[job.lane].stretch.of(job.active)

    def reserve(self, lane: str, *, active: bool) -> float:
        """Take a start slot in ``lane``; seconds until it (0: start now).

        Tokens may go negative: that is the queue of reserved slots, kept as one number
        per class. Every start is charged to the lane's bucket, which idle starts wait
        for; active starts wait only for the active ones before them (their own bucket),
        so a backlog of idle starts never delays an active workflow.
        """
        slot = self._lane(lane)
        now = self._monotonic()
        gained = (now - slot.updated) * slot.rate
        slot.updated = now
        slot.tokens = min(slot.burst, slot.tokens + gained) - 1
        slot.active_tokens = min(slot.burst, slot.active_tokens + gained)
        if active:
            slot.active_tokens -= 1
            tokens = slot.active_tokens
        else:
            tokens = slot.tokens
        return 0.0 if tokens >= 0 else -tokens / slot.rate

    def stretch(self) -> Stretch:
        """The largest factors over all lanes (the gauge)."""
        lanes = list(self._lanes.values())  # read from a scrape's worker thread too
        return Stretch(
            max((lane.stretch.active for lane in lanes), default=1.0),
            max((lane.stretch.idle for lane in lanes), default=1.0),
        )

    def demanded(self, lane: str) -> float:
        slot = self._lanes.get(lane)
        return slot.demanded if slot is not None else 0.0
