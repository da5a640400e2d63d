"""Bounded metrics at scale (issue 12.3): series only for live workflows, a cap with a count
of what was left out, a small /metrics at 10,000 workflows, and a scrape rendered off the
event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tests.http.conftest import ServerFactory
from watcher.runtime.metrics import Metrics

DROPPED = "cce_watcher_workflow_series_dropped_total"
TASKS = {"PreCheck": "Success", "Cluster": "Running", "PostCheck": "Init"}


def workflow_series(reg: CollectorRegistry) -> set[tuple[str, str]]:
    return {
        (s.labels["target"], s.labels["workflow"])
        for family in reg.collect()
        for s in family.samples
        if s.name in {"cce_watcher_workflow_phase", "cce_watcher_task_status"}
    }


def test_a_workflow_that_ended_has_no_series_left() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.set_workflow("t", "wf", "Running", TASKS, 600.0, state="Running")
    assert workflow_series(reg) == {("t", "wf")}
    m.set_workflow("t", "wf", "Success", TASKS, None, state="Succeeded")
    assert workflow_series(reg) == set()
    text = generate_latest(reg).decode()
    assert 'workflow="wf"' not in text


def test_beyond_the_cap_workflows_are_counted_once_not_exported() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, max_workflows=3)
    for poll in range(3):  # every workflow is polled again: counted once each all the same
        for i in range(5):
            m.set_workflow("t", f"wf{i}", "Running", TASKS, None)
        assert len(workflow_series(reg)) == 3
        assert reg.get_sample_value(DROPPED) == 2, poll
    m.set_workflow("t", "wf0", "Success", TASKS, None)  # one ends: room for a left-out one
    m.set_workflow("t", "wf4", "Running", TASKS, None)
    assert ("t", "wf4") in workflow_series(reg)
    assert reg.get_sample_value(DROPPED) == 2


def test_metrics_at_10000_known_workflows_stay_under_a_megabyte() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    for t in range(1000):  # 1,000 clusters x 10 workflows; 200 of them live
        target = f"cluster-{t:04d}"
        m.poll_finished(target, "ok", 0.05)
        m.poll_finished(target, "transport", 1.0)
        m.api_response("cce.example", "cce.workflows.list", 200, None, 0.05)
        for w in range(10):
            live = w == 0 and t % 5 == 0
            m.set_workflow(
                target,
                f"{t:04d}0000-0000-0000-0000-{w:012d}",
                "Running" if live else "Success",
                TASKS,
                3600.0 if live else None,
                state="Running" if live else "Succeeded",
            )
    body = generate_latest(reg)
    assert len(workflow_series(reg)) == 200
    assert len(body) < 1_000_000, len(body)


class _Slow(Collector):
    """A collector that takes a while and notes the thread it ran on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.threads: list[int] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.threads.append(threading.get_ident())
        time.sleep(self.seconds)  # the CPU of a big render, without the flakiness of real CPU
        yield GaugeMetricFamily("bench_slow", "A slow collector.", value=1)


async def test_a_scrape_is_rendered_off_the_event_loop(
    make_server: ServerFactory, client: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    slow = _Slow(0.4)
    registry.register(slow)
    server = await make_server()
    loop_thread = threading.get_ident()
    stalls: list[float] = []

    async def probe() -> None:  # the loop-lag monitor: how late does a 10 ms sleep wake?
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            stalls.append(time.monotonic() - t0 - 0.01)

    monitor = asyncio.create_task(probe())
    try:
        async with client.get(server.url + "/metrics") as resp:
            assert resp.status == 200
            assert b"bench_slow 1.0" in await resp.read()
    finally:
        monitor.cancel()
    assert slow.threads and loop_thread not in slow.threads
    # On the loop, the render would stall it for the collector's whole 0.4 s.
    assert max(stalls) < 0.2, max(stalls)
