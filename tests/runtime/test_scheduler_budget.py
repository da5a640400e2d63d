"""The scheduler keeps demand within the request budget: stretch, paced starts, readiness,
and a stop that ends polls waiting for the budget at once (issue 12.2 and 12.4)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from structlog.testing import capture_logs

from watcher.runtime.budget import STRETCH_TO, HostBudget, PollBudget
from watcher.runtime.scheduler import PollScheduler


def budgeted(rate: float, burst: float, *, active: set[str] | None = None) -> PollScheduler:
    sched = PollScheduler()
    sched.use_budget(PollBudget(rate, burst))
    actives = active or set()
    sched.job_info = lambda job_id: ("eu", job_id in actives)
    return sched


async def test_starts_beyond_the_budget_wait_as_timers_not_as_running_polls() -> None:
    sched = budgeted(rate=20, burst=5)
    sched.start()
    started: list[str] = []
    release = asyncio.Event()

    def job(name: str):  # type: ignore[no-untyped-def]
        async def run() -> float | None:
            started.append(name)
            await release.wait()
            return 600.0

        return run

    for i in range(200):
        sched.add(f"j{i}", job(f"j{i}"))
    await asyncio.sleep(0.5)
    # 5 at once, then 20/s: ~15 in half a second; the other ~180 are timers, not tasks
    assert 5 <= len(started) <= 5 + 20 * 0.5 + 4
    assert sched.inflight == len(started)
    assert sched.behind_schedule() == 0  # each has its slot, well within its interval
    release.set()
    await sched.shutdown(1)


async def test_active_jobs_start_ahead_of_an_idle_backlog() -> None:
    sched = budgeted(rate=10, burst=1, active={"hot"})
    sched.start()
    started: dict[str, float] = {}

    def job(name: str):  # type: ignore[no-untyped-def]
        async def run() -> float | None:
            started[name] = time.monotonic()
            return 600.0

        return run

    t0 = time.monotonic()
    for i in range(50):
        sched.add(f"idle{i}", job(f"idle{i}"))  # a 5 s backlog at 10/s
    await asyncio.sleep(0.05)
    sched.add("hot", job("hot"))
    await asyncio.sleep(0.3)
    assert "hot" in started and started["hot"] - t0 < 0.3
    assert len(started) < 10
    await sched.shutdown(1)


async def test_delays_are_stretched_when_demand_exceeds_the_budget() -> None:
    sched = budgeted(rate=2, burst=100)
    sched.first_interval_s = 1.0
    sched.start()
    runs: dict[str, int] = {}
    done = asyncio.Event()

    def job(name: str):  # type: ignore[no-untyped-def]
        async def run() -> float | None:
            runs[name] = runs.get(name, 0) + 1
            if len(runs) == 8:
                done.set()
            return 1.0  # each asks for 1 req/s: 8 req/s demanded, 2 allowed

        return run

    for i in range(8):
        sched.add(f"j{i}", job(f"j{i}"))
    await asyncio.wait_for(done.wait(), 2)
    budget = sched.budget
    assert budget is not None
    assert budget.demanded("eu") == pytest.approx(8.0)
    assert budget.factor("j0") == pytest.approx(8 / (STRETCH_TO * 2))  # idle: 8 into 1.8
    await asyncio.sleep(1.5)
    assert all(n == 1 for n in runs.values()), runs  # next runs come ~4 s later, not 1 s
    await sched.shutdown(1)


async def test_a_job_scheduled_beyond_its_interval_is_behind_and_one_that_ran_is_not() -> None:
    sched = PollScheduler()
    sched.first_interval_s = 10.0
    sched.start()

    async def job() -> float | None:
        return 1000.0

    sched.add("late", job, first_delay=500.0)  # not within its 10 s interval
    sched.add("soon", job, first_delay=5.0)
    sched.add("now", job)
    await asyncio.sleep(0.1)
    assert sched.behind_schedule() == 1  # "now" ran, "soon" is within 10 s, "late" is not
    await sched.shutdown(1)


async def test_stop_ends_polls_waiting_for_the_budget_at_once_and_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = HostBudget(rate=0.01, burst=1)  # the first poll takes the only token
    # no pacing, no in-flight cap: every poll reaches the limiter and waits there
    sched = PollScheduler(max_in_flight=10_000, max_in_flight_per_lane=10_000)
    sched.start()
    waiting = 0

    def job():  # type: ignore[no-untyped-def]
        async def run() -> float | None:
            nonlocal waiting
            waiting += 1
            await limiter.acquire("h")
            await asyncio.sleep(30)  # a poll holding its token and never ending
            return 60.0

        return run

    for i in range(2000):
        sched.add(f"j{i}", job())
    while waiting < 2000:
        await asyncio.sleep(0.05)
    assert limiter.waiting("h") == 1999
    caplog.set_level(logging.INFO)
    t0 = time.monotonic()
    limiter.close()  # what App._stop_scheduler does first
    await sched.shutdown(timeout=0.5)  # only the one real poll is waited for, then cancelled
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, elapsed
    assert not sched.running
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors[:3]]


async def test_jobs_that_send_nothing_now_neither_count_nor_wait_for_a_slot() -> None:
    # HA: a target another replica holds is looked at by its job, which sends no request.
    sched = PollScheduler()
    sched.use_budget(PollBudget(1, 1))
    sched.job_info = lambda job_id: (None, False) if job_id.startswith("free") else ("eu", False)
    sched.start()
    started: list[str] = []

    def job(name: str):  # type: ignore[no-untyped-def]
        async def run() -> float | None:
            started.append(name)
            return 60.0

        return run

    for i in range(20):
        sched.add(f"free{i}", job(f"free{i}"))
    await asyncio.sleep(0.3)
    assert len(started) == 20  # none paced at 1/s
    budget = sched.budget
    assert budget is not None and budget.demanded("eu") == 0.0
    await sched.shutdown(1)


async def test_a_job_counts_its_expected_first_interval_until_it_first_ran() -> None:
    """A cluster with nothing live asks discovery_s, not idle_s: counting it at idle_s until
    its first run over-stretched the first round (issue 12.2)."""
    sched = budgeted(rate=10, burst=10)
    sched.first_interval_s = 60.0
    sched.add("workflow", _never_due, first_delay=90)  # not started: neither runs
    sched.add("cluster", _never_due, first_delay=90, first_interval=120.0)
    budget = sched.budget
    assert budget is not None
    assert budget.demanded("eu") == pytest.approx(1 / 60 + 1 / 120)
    assert sched.interval("cluster") == 120.0
    assert sched.behind_schedule() == 1  # due in 90 s: beyond 60 s, within 120 s


async def _never_due() -> float | None:
    return 600.0


async def test_a_job_whose_bookkeeping_fails_still_runs_and_runs_again() -> None:
    """``job_info`` raising (a bug in the app's lookup) is logged; the job keeps its runs."""
    sched = budgeted(rate=100, burst=10)

    def broken(job_id: str) -> tuple[str | None, bool]:
        raise KeyError(job_id)

    sched.job_info = broken
    sched.start()
    starts: list[float] = []

    async def run() -> float | None:
        starts.append(time.monotonic())
        return 0.2

    with capture_logs() as logs:
        sched.add("j", run)
        deadline = time.monotonic() + 5
        while len(starts) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    await sched.shutdown(1)
    assert len(starts) >= 2
    assert any(line["event"] == "scheduler.job_info_failed" for line in logs), logs
