"""The scheduler's start lateness reaches /metrics as a histogram (the scale benchmark's p99)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest

from watcher.runtime.metrics import Metrics
from watcher.runtime.scheduler import PollScheduler


async def test_every_scheduled_run_is_observed_in_the_lateness_histogram() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    sched = PollScheduler()
    sched.on_lateness = metrics.schedule_lateness
    sched.start()
    runs = 0
    done = asyncio.Event()

    async def job() -> float | None:
        nonlocal runs
        runs += 1
        if runs == 3:
            done.set()
            return None
        return 0.01

    sched.add("j", job)
    await asyncio.wait_for(done.wait(), 2)
    await sched.shutdown(1)
    text = generate_latest(registry).decode()
    assert "cce_watcher_schedule_lateness_seconds_count 3.0" in text
