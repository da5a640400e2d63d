"""APScheduler's cost stays flat (issue 12, PERF_NOTES.md): a run that asks for the same
delay again is not rescheduled (the interval trigger already planned it), and a run longer
than its interval is not followed by a back-to-back run for the tick that came meanwhile."""

from __future__ import annotations

import asyncio
import itertools
import time

from watcher.runtime.scheduler import PollScheduler


async def _starts(
    delay: float, runs: int, *, interval: float = 1.0, busy_s: float = 0.0
) -> tuple[PollScheduler, list[float]]:
    """A job asking for ``delay`` every run, on a trigger set to ``interval``, until ``runs``
    starts; ``busy_s``: the loop is blocked that long right after the job is added."""
    sched = PollScheduler()
    sched.first_interval_s = interval
    sched.start()
    starts: list[float] = []

    async def job() -> float:
        starts.append(time.monotonic())
        return delay

    sched.add("j", job)
    time.sleep(busy_s)
    while len(starts) < runs:
        await asyncio.sleep(0.05)
    await sched.shutdown(1)
    return sched, starts


async def test_an_unchanged_delay_costs_no_reschedule_and_keeps_the_cadence() -> None:
    sched, starts = await _starts(1.0, 4)
    assert sched.reschedules == 0
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0.9 <= g <= 2.5 for g in gaps), gaps  # loose: a busy machine


async def test_a_changed_delay_reschedules_once_then_rides_the_new_interval() -> None:
    sched, starts = await _starts(1.2, 4)
    assert sched.reschedules == 1
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(1.1 <= g <= 2.7 for g in gaps), gaps


async def test_a_run_longer_than_its_interval_is_not_followed_at_once() -> None:
    sched = PollScheduler()
    sched.first_interval_s = 1.0
    sched.start()
    starts: list[float] = []

    async def job() -> float:
        starts.append(time.monotonic())
        if len(starts) == 1:
            await asyncio.sleep(1.6)  # the trigger's tick passes during this run
        return 1.0

    sched.add("j", job)
    while len(starts) < 2:
        await asyncio.sleep(0.05)
    await sched.shutdown(1)
    # The next run comes a full interval after the long one ended, not right after it.
    assert starts[1] - starts[0] >= 1.6 + 0.9, starts


async def test_run_soon_during_a_run_runs_again_when_it_ends() -> None:
    sched = PollScheduler()
    sched.first_interval_s = 30.0
    sched.start()
    starts: list[float] = []
    release = asyncio.Event()

    async def job() -> float:
        starts.append(time.monotonic())
        if len(starts) == 1:
            await release.wait()
        return 30.0

    sched.add("j", job)
    while not starts:
        await asyncio.sleep(0.01)
    sched.run_soon("j")
    await asyncio.sleep(0.1)
    release.set()
    while len(starts) < 2:
        await asyncio.sleep(0.01)
    await sched.shutdown(1)
    assert starts[1] - starts[0] < 1.0


async def test_a_run_that_started_late_counts_its_next_delay_from_its_start() -> None:
    """A backlog (the first round of 30,000 targets on one core) must not keep every later
    round as late: a run that started late is followed a full delay after it started, not
    one interval after the time it was due (which had already passed, or nearly)."""
    # The trigger's interval again (on time, no reschedule); the first run starts 1.8 s late.
    sched, starts = await _starts(2.0, 2, interval=2.0, busy_s=1.8)
    assert starts[1] - starts[0] >= 1.9, starts  # on its trigger it came 0.2 s later
    assert sched.reschedules >= 1  # the late run re-armed (a busy CI may make the next late)
