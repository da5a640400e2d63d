"""The scheduler wrapper runs adaptive jobs, stops them, and shuts down without cancelling."""

from __future__ import annotations

import asyncio
import itertools

from watcher.runtime.scheduler import PollScheduler


async def test_job_follows_the_delay_it_returns_and_stops_on_none() -> None:
    sched = PollScheduler()
    sched.start()
    runs: list[float] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def job() -> float | None:
        runs.append(loop.time())
        if len(runs) == 3:
            done.set()
            return None
        return 0.05

    sched.add("j", job)
    await asyncio.wait_for(done.wait(), 2)
    await asyncio.sleep(0.15)
    assert len(runs) == 3
    assert "j" not in sched
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(runs))
    await sched.shutdown(1)


async def test_crashing_job_is_retried_later_not_lost() -> None:
    sched = PollScheduler()
    sched.start()
    calls = 0

    async def job() -> float | None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    sched.add("j", job)
    await asyncio.sleep(0.1)
    assert calls == 1
    assert "j" in sched  # still scheduled (fallback interval)
    await sched.shutdown(1)


async def test_shutdown_waits_for_inflight_jobs() -> None:
    sched = PollScheduler()
    sched.start()
    started, finished = asyncio.Event(), asyncio.Event()

    async def job() -> float | None:
        started.set()
        await asyncio.sleep(0.2)
        finished.set()
        return 10

    sched.add("j", job)
    await asyncio.wait_for(started.wait(), 2)
    await sched.shutdown(timeout=2)
    assert finished.is_set()
    assert not sched.running


async def test_shutdown_cancels_jobs_past_the_bound() -> None:
    sched = PollScheduler()
    sched.start()
    started = asyncio.Event()
    cancelled = False

    async def job() -> float | None:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled = True
            raise
        return 1

    sched.add("j", job)
    await asyncio.wait_for(started.wait(), 2)
    await sched.shutdown(timeout=0.1)
    assert cancelled


async def test_run_soon_and_lateness_are_tracked() -> None:
    sched = PollScheduler()
    sched.start()
    ran = asyncio.Event()

    async def job() -> float | None:
        ran.set()
        return 100

    sched.add("j", job, first_delay=100)
    sched.run_soon("j")
    await asyncio.wait_for(ran.wait(), 2)
    assert sched.lateness_quantile(0.99) is not None
    await sched.shutdown(1)


async def test_crashing_job_backs_off_up_to_the_cap_not_a_fixed_minute() -> None:
    sched = PollScheduler(max_delay_s=0.05)
    sched.start()
    calls = 0

    async def job() -> float | None:
        nonlocal calls
        calls += 1
        raise RecursionError("a bug")

    sched.add("j", job)
    await asyncio.sleep(0.5)
    assert calls >= 3  # retried at most max_delay_s apart (it was a fixed 60 s)
    assert sched.crashes == calls
    await sched.shutdown(1)


async def test_absurd_delays_are_clamped_not_raised() -> None:
    sched = PollScheduler(max_delay_s=0.05)
    sched.start()
    calls = 0
    done = asyncio.Event()

    async def job() -> float | None:
        nonlocal calls
        calls += 1
        if calls == 3:
            done.set()
            return None
        return [1e300, float("nan")][calls - 1]  # timedelta(1e300) raised before

    sched.add("j", job, first_delay=float("inf"))
    sched.run_soon("j", -5.0)
    await asyncio.wait_for(done.wait(), 2)
    assert sched.crashes == 0
    await sched.shutdown(1)


async def test_a_job_due_again_at_once_runs_at_once_never_a_fallback_interval_later() -> None:
    """A run that asks for delay 0 is not skipped as 'maximum number of running instances
    reached' (APScheduler drops its instance count only after the wake-up the reschedule
    queued), which used to park the job for the 60 s fallback interval."""
    sched = PollScheduler()
    sched.start()
    runs = 0
    done = asyncio.Event()

    async def job() -> float | None:
        nonlocal runs
        runs += 1
        if runs == 5:
            done.set()
            return None
        return 0.0

    sched.add("j", job)
    await asyncio.wait_for(done.wait(), 3)
    assert runs == 5
    await sched.shutdown(1)


async def test_run_soon_during_a_run_gives_one_more_run_after_it_never_two_at_once() -> None:
    sched = PollScheduler()
    sched.start()
    running = 0
    overlaps = 0
    runs = 0
    release = asyncio.Event()

    async def job() -> float | None:
        nonlocal running, overlaps, runs
        running += 1
        overlaps = max(overlaps, running)
        runs += 1
        if runs == 1:
            await release.wait()
        running -= 1
        return 3600.0

    sched.add("j", job)
    while runs == 0:
        await asyncio.sleep(0.01)
    sched.run_soon("j")  # asked while the first run is still in flight
    await asyncio.sleep(0.1)
    release.set()
    deadline = asyncio.get_running_loop().time() + 3
    while runs < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert runs == 2 and overlaps == 1
    await sched.shutdown(1)
